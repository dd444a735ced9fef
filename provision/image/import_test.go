package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hearth/app"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
)

// mkfs makes a small ext4 image from a directory tree, as the builder does.
func mkfs(t *testing.T, tree map[string]string, links map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		testenv.Missing(t, "mkfs.ext4 (e2fsprogs)", err)
	}
	root := t.TempDir()
	for p, body := range tree {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(body), 0o755)
	}
	for p, to := range links {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.Symlink(to, filepath.Join(root, p))
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	return img
}

// TestImportFromFiles: a real kernel and an ext4 root filesystem become an image with the
// extracted vmlinux and its facts; other files are refused with what they are, and a
// refused import leaves no directory.
func TestImportFromFiles(t *testing.T) {
	kernel, _ := qemutest.Kernel(t)
	systemd := mkfs(t, map[string]string{"usr/bin/cloud-init": "#!/bin/sh\n", "lib/systemd/systemd": "elf"}, map[string]string{"sbin/init": "/lib/systemd/systemd"})
	dir := filepath.Join(t.TempDir(), "img")
	var steps []string
	files, facts, err := Import(context.Background(), Files{Kernel: kernel, Rootfs: systemd}, dir, func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatal(err)
	}
	if facts != (Facts{Init: app.InitSystemd, CloudInit: true}) {
		t.Errorf("facts %+v", facts)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		if f.Size == 0 || len(f.SHA256) != 64 {
			t.Errorf("file %+v", f)
		}
	}
	if strings.Join(names, ",") != "vmlinuz,vmlinux,rootfs.ext4" || strings.Join(steps, ",") != strings.Join(ImportSteps, ",") {
		t.Errorf("files %v, steps %v", names, steps)
	}
	openrc := mkfs(t, map[string]string{"sbin/init": "sysvinit", "sbin/openrc-run": "x"}, nil)
	if f, err := Inspect(context.Background(), openrc); err != nil || f != (Facts{Init: app.InitOpenRC}) {
		t.Errorf("openrc facts %+v %v", f, err)
	}
	bare := mkfs(t, map[string]string{"etc/hostname": "x"}, nil)
	if f, err := Inspect(context.Background(), bare); err != nil || f != (Facts{}) {
		t.Errorf("bare facts %+v %v", f, err)
	}

	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("\x1f\x8b\x08 not a filesystem"), 0o644)
	for _, c := range []struct {
		files Files
		want  string
	}{
		{Files{Kernel: junk, Rootfs: systemd}, "neither a bzImage nor an ELF kernel (gzip data)"},
		{Files{Kernel: kernel, Rootfs: junk}, "is not an ext4 filesystem (gzip data)"},
		{Files{Kernel: kernel, Rootfs: kernel}, "is not an ext4 filesystem"},
		{Files{Kernel: kernel, Rootfs: systemd, Initrd: "/nonexistent"}, "not a regular file"},
	} {
		d := filepath.Join(t.TempDir(), "img")
		_, _, err := Import(context.Background(), c.files, d, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Import(%+v) = %v, want %q", c.files, err, c.want)
		}
		if _, serr := os.Stat(d); !os.IsNotExist(serr) {
			t.Errorf("a refused import left %s", d)
		}
	}
}
