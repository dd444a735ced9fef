package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"hearth/app"
	"hearth/internal/testkit/ocitest"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
)

// debugfs runs one debugfs request against an ext4 image.
func debugfs(t *testing.T, rootfs, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, rootfs).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v %s", req, err, out)
	}
	return string(out)
}

// stat returns a file's type, mode, uid and link count in an ext4 image ("" when missing).
func stat(t *testing.T, rootfs, p string) (typ, mode, uid, links string) {
	t.Helper()
	out := debugfs(t, rootfs, "stat "+p)
	if strings.Contains(out, "File not found") || strings.Contains(out, "is not a directory") {
		return "", "", "", ""
	}
	get := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("debugfs stat %s: no %s in\n%s", p, re, out)
		}
		return m[1]
	}
	return get(`Type: (\w+)`), get(`Mode:\s+(\d+)`), get(`User:\s+(\d+)`), get(`Links: (\d+)`)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (OCI images keep their files' owners)", "not root")
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (e2fsprogs)", err)
		}
	}
}

// guestLayers are two layers of a small guest: the base, and a layer that removes a file
// (whiteout), hides a directory's old contents (opaque whiteout), replaces a directory with
// a file and a file with a directory, and tries to write out of the tree through an
// absolute symlink and with ../ and absolute names.
func guestLayers(t *testing.T, kernel []byte, canary string) []v1.Layer {
	t.Helper()
	su := ocitest.Exe("usr/bin/su", "#!/bin/sh\n")
	su.Mode = 0o4755
	owned := ocitest.File("home/u/notes", "mine")
	owned.UID, owned.GID = 1000, 1000
	ping := ocitest.Exe("usr/bin/ping", "ping")
	ping.Xattrs = map[string]string{"user.hearth": "kept"}
	base := ocitest.Layer(t,
		ocitest.Dir("etc/"), ocitest.Dir("sbin"), ocitest.Dir("usr/"), ocitest.Dir("usr/bin/"), ocitest.Dir("boot/"), ocitest.Dir("keep/"), ocitest.Dir("opt/"), ocitest.Dir("opt/dir/"),
		ocitest.Exe("sbin/init", "#!/bin/sh\nexec /bin/sh\n"), ocitest.Exe("usr/bin/cloud-init", "#!/bin/sh\n"),
		ocitest.File("etc/gone.conf", "old"), ocitest.File("keep/x", "x"), ocitest.File("keep/y", "y"), ocitest.File("opt/dir/a", "a"),
		ocitest.File("opt/was-a-file", "f"), su, ocitest.Hardlink("usr/bin/su2", "usr/bin/su"), owned, ping,
		ocitest.Symlink("escape", "/"), ocitest.Symlink("up", "../../../../.."),
		ocitest.File("boot/vmlinuz-6.1.0-test", string(kernel)),
		ocitest.File("boot/initrd.img-6.1.0-test", "pretend initrd"),
	)
	top := ocitest.Layer(t,
		ocitest.File("etc/.wh.gone.conf", ""),
		ocitest.File("keep/.wh..wh..opq", ""), ocitest.File("keep/z", "z"),
		ocitest.File("opt/dir", "now a file"),
		ocitest.Dir("opt/was-a-file/"), ocitest.File("opt/was-a-file/inside", "i"),
		ocitest.File("escape/tmp/"+canary, "through the absolute link"),
		ocitest.File("up/tmp/"+canary+"-up", "through the relative link"),
		ocitest.File("../../../tmp/"+canary+"-dots", "dots"),
		ocitest.File("/etc/hostname", "guest\n"),
	)
	return []v1.Layer{base, top}
}

// TestImportOCIArchives: a `docker save` tarball, an OCI layout and a tar of one each make
// the same image: layers applied in order with whiteouts honoured, owners, modes, hard
// links and xattrs kept, nothing written outside the tree, the kernel and initrd from
// /boot, an ext4 root filesystem labelled rootfs.
func TestImportOCIArchives(t *testing.T) {
	needRoot(t)
	vmlinuz, _ := qemutest.Kernel(t)
	kernel, err := os.ReadFile(vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	canary := "hearth-oci-canary-" + rand.Text()[:8]
	img := ocitest.Image(t, "amd64", guestLayers(t, kernel, canary)...)
	lay := ocitest.Layout(t, img, "amd64")
	for _, c := range []struct{ what, archive string }{
		{"docker save", ocitest.DockerSave(t, img)}, {"OCI layout", lay}, {"OCI layout tar", ocitest.TarDir(t, lay)},
	} {
		t.Run(c.what, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "img")
			var steps, log []string
			files, facts, digest, err := ImportOCI(context.Background(), OCI{Archive: c.archive, Size: "64M"}, dir,
				func(s string) { steps = append(steps, s) }, func(l string) { log = append(log, l) })
			if err != nil {
				t.Fatalf("%v\n%s", err, strings.Join(log, "\n"))
			}
			if strings.Join(steps, ",") != strings.Join(OCISteps, ",") {
				t.Errorf("steps %v, want %v", steps, OCISteps)
			}
			if want, _ := img.Digest(); digest != want.String() {
				t.Errorf("digest %s, want %s", digest, want)
			}
			for _, p := range []string{"/tmp/" + canary, "/tmp/" + canary + "-up", "/tmp/" + canary + "-dots"} {
				if _, err := os.Lstat(p); err == nil {
					os.Remove(p)
					t.Errorf("a layer wrote %s on the host", p)
				}
			}
			if facts.Init != app.InitOther || !facts.CloudInit {
				t.Errorf("facts %+v", facts)
			}
			names := map[string]bool{}
			for _, f := range files {
				names[f.Name] = true
			}
			for _, n := range []string{KernelFile, VmlinuxFile, InitrdFile, RootfsFile} {
				if !names[n] {
					t.Errorf("no %s among %v", n, files)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(dir, KernelFile)); !bytes.Equal(got, kernel) {
				t.Error("the kernel is not the image's /boot/vmlinuz-*")
			}
			if _, err := os.Stat(filepath.Join(dir, ".tree")); !os.IsNotExist(err) {
				t.Errorf("the flattened tree was left: %v", err)
			}
			rootfs := filepath.Join(dir, RootfsFile)
			if out := debugfs(t, rootfs, "stats"); !strings.Contains(out, "Filesystem volume name:   rootfs") {
				t.Errorf("label:\n%.600s", out)
			}
			for p, want := range map[string]string{
				"/etc/gone.conf": "", "/keep/x": "", "/keep/y": "", "/keep/z": "regular",
				"/opt/dir": "regular", "/opt/dir/a": "", "/opt/was-a-file": "directory", "/opt/was-a-file/inside": "regular",
				"/tmp/" + canary: "regular", "/tmp/" + canary + "-up": "regular", "/tmp/" + canary + "-dots": "regular",
				"/etc/hostname": "regular", "/escape": "symlink",
			} {
				if typ, _, _, _ := stat(t, rootfs, p); typ != want {
					t.Errorf("%s: %q, want %q", p, typ, want)
				}
			}
			if got := debugfs(t, rootfs, "cat /opt/dir"); !strings.Contains(got, "now a file") {
				t.Errorf("/opt/dir: %q", got)
			}
			if _, mode, uid, links := stat(t, rootfs, "/usr/bin/su"); mode != "04755" || uid != "0" || links != "2" {
				t.Errorf("/usr/bin/su: mode %s uid %s links %s; want 04755, 0, 2 (with su2)", mode, uid, links)
			}
			if _, _, uid, _ := stat(t, rootfs, "/home/u/notes"); uid != "1000" {
				t.Errorf("/home/u/notes owned by %s, want 1000", uid)
			}
			if out := debugfs(t, rootfs, "ea_list /usr/bin/ping"); !strings.Contains(out, "user.hearth") {
				t.Errorf("xattr lost: %s", out)
			}
		})
	}
}

// TestImportOCIRefusals: what cannot make a bootable, registering VM is refused, naming
// what is missing or what the input is; nothing is left of the attempt.
func TestImportOCIRefusals(t *testing.T) {
	needRoot(t)
	vmlinuz, _ := qemutest.Kernel(t)
	kernelFrom := t.TempDir()
	if err := copyFile(context.Background(), vmlinuz, filepath.Join(kernelFrom, KernelFile)); err != nil {
		t.Fatal(err)
	}
	bare := ocitest.Image(t, "amd64", ocitest.Layer(t, ocitest.Dir("etc/"), ocitest.File("etc/os-release", "ID=debian\n")))
	noKernel := ocitest.Image(t, "amd64", ocitest.Layer(t, ocitest.Exe("sbin/init", "x"), ocitest.Exe("usr/bin/cloud-init", "x")))
	noCloudInit := ocitest.Image(t, "amd64", ocitest.Layer(t, ocitest.Symlink("sbin/init", "/lib/systemd/systemd"), ocitest.Exe("lib/systemd/systemd", "x")))
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notTar, bytes.Repeat([]byte("just some text\n"), 100), 0o644)
	emptyTar := filepath.Join(t.TempDir(), "empty.tar")
	os.WriteFile(emptyTar, ocitest.LayerTar(t, ocitest.File("readme", "hi")), 0o644)
	for _, c := range []struct {
		what string
		src  OCI
		step string
		want []string
	}{
		{"no init, no cloud-init", OCI{Archive: ocitest.DockerSave(t, bare)}, StepCheck, []string{"no an init", "/sbin/init", "no cloud-init"}},
		{"no cloud-init", OCI{Archive: ocitest.DockerSave(t, noCloudInit)}, StepCheck, []string{"no cloud-init"}},
		{"no kernel", OCI{Archive: ocitest.DockerSave(t, noKernel)}, StepKernel, []string{"no kernel in /boot", "--kernel-from"}},
		{"another architecture", OCI{Archive: ocitest.DockerSave(t, ocitest.Image(t, "arm64", ocitest.Layer(t, ocitest.File("x", "y"))))}, StepPull, []string{"linux/arm64", "linux/amd64"}},
		{"not a tar", OCI{Archive: notTar}, StepPull, []string{"notes.txt is not a tar archive"}},
		{"a tar of something else", OCI{Archive: emptyTar}, StepPull, []string{"neither a docker save tarball", "nor an OCI layout"}},
		{"a layout without amd64", OCI{Archive: ocitest.Layout(t, noKernel, "arm64")}, StepPull, []string{"no linux/amd64 image", "linux/arm64"}},
		{"too big", OCI{Archive: ocitest.DockerSave(t, noKernel), MaxBytes: 1}, StepFlatten, []string{"larger than"}},
	} {
		t.Run(c.what, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "img")
			_, _, _, err := ImportOCI(context.Background(), c.src, dir, nil, nil)
			var se *StepError
			if !errors.As(err, &se) || se.Step != c.step {
				t.Fatalf("err %v; want a failure at step %s", err, c.step)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("left %s: %v", dir, err)
			}
		})
	}
	// With a kernel from another image, an image without one is made.
	dir := filepath.Join(t.TempDir(), "img")
	if _, _, _, err := ImportOCI(context.Background(), OCI{Archive: ocitest.DockerSave(t, noKernel), KernelFrom: kernelFrom, Size: "64M"}, dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{KernelFile, VmlinuxFile, RootfsFile} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("--kernel-from: %v", err)
		}
	}
}

// registry starts Debian's docker-registry on a loopback port with its storage in a
// temporary directory, and returns its host:port.
func registry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		testenv.Missing(t, "docker-registry (Debian's docker-registry package)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)), 0o644)
	cmd := exec.Command(bin, "serve", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if i > 100 {
			t.Fatalf("docker-registry did not listen on %s:\n%s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImportOCIFromRegistry pushes a multi-layer image to a real registry on loopback and
// imports it by reference, tag and digest; a missing tag is refused with the registry's
// word for it.
func TestImportOCIFromRegistry(t *testing.T) {
	needRoot(t)
	addr := registry(t)
	vmlinuz, _ := qemutest.Kernel(t)
	kernel, _ := os.ReadFile(vmlinuz)
	img := ocitest.Image(t, "amd64", guestLayers(t, kernel, "hearth-reg-"+hex.EncodeToString([]byte(rand.Text()[:4])))...)
	ref, _ := name.ParseReference(addr + "/hearth/guest:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push: %v", err)
	}
	d, _ := img.Digest()
	for _, r := range []string{addr + "/hearth/guest:1", addr + "/hearth/guest@" + d.String()} {
		dir := filepath.Join(t.TempDir(), "img")
		_, facts, digest, err := ImportOCI(context.Background(), OCI{Ref: r, Size: "64M"}, dir, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if digest != d.String() || !facts.CloudInit {
			t.Errorf("%s: digest %s facts %+v", r, digest, facts)
		}
		if typ, _, _, _ := stat(t, filepath.Join(dir, RootfsFile), "/keep/z"); typ != "regular" {
			t.Errorf("%s: /keep/z %q", r, typ)
		}
	}
	_, _, _, err := ImportOCI(context.Background(), OCI{Ref: addr + "/hearth/guest:nope"}, filepath.Join(t.TempDir(), "img"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("a missing tag: %v", err)
	}
}
