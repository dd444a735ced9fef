package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hearth/internal/testkit/ocitest"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
)

// TestImageCommands: `hearth image` imports from files and from an OCI archive (with the
// kernel of the first), prints each step as it goes, lists, refuses what it cannot do
// with the reason, and deletes.
func TestImageCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (OCI images keep their files' owners)", "not root")
	}
	vmlinuz, _ := qemutest.Kernel(t)
	work := t.TempDir()
	rootfs := filepath.Join(work, "root.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "rootfs", rootfs, "16M").CombinedOutput(); err != nil {
		testenv.Missing(t, "mkfs.ext4 (e2fsprogs)", string(out))
	}
	archive := ocitest.DockerSave(t, ocitest.Image(t, "amd64",
		ocitest.Layer(t, ocitest.Exe("sbin/init", "#!\n"), ocitest.Exe("usr/bin/cloud-init", "#!\n"))))
	getenv := testEnv(map[string]string{"HEARTH_DATA_DIR": filepath.Join(work, "data")})
	image := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"image"}, args...), getenv, noSetenv, nil, &out, &out)
		return out.String(), err
	}
	if out, err := image("import", "base", "--kernel", vmlinuz, "--rootfs", rootfs); err != nil || !strings.Contains(out, "==> check") ||
		!strings.Contains(out, "image base is ready") {
		t.Fatalf("import from files: %v\n%s", err, out)
	}
	out, err := image("import", "app", "--oci-archive", archive, "--kernel-from", "base", "--size", "64M")
	if err != nil {
		t.Fatalf("import an OCI archive: %v\n%s", err, out)
	}
	for _, want := range []string{"==> pull", "==> flatten", "==> filesystem", "image app is ready", "cloud-init true"} {
		if !strings.Contains(out, want) {
			t.Errorf("the OCI import's output lacks %q:\n%s", want, out)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "x", "--oci", "debian:12", "--rootfs", rootfs}, "not both"},
		{[]string{"import", "y", "--oci-archive", archive, "--kernel-from", "nope"}, "no ready image is named nope"},
		{[]string{"import", "app", "--oci-archive", archive, "--kernel-from", "base"}, "already"},
		{[]string{"import", "z", "--oci-archive", vmlinuz, "--kernel-from", "base"}, "is not a tar archive"},
	} {
		if out, err := image(c.args...); err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("%v: %v %s; want an error with %q", c.args, err, out, c.want)
		}
	}
	if out, err := image("list"); err != nil || !strings.Contains(out, "app ") || !strings.Contains(out, " oci ") {
		t.Errorf("list: %v\n%s", err, out)
	}
	for _, n := range []string{"app", "base"} {
		if out, err := image("delete", n); err != nil || !strings.Contains(out, "deleted image "+n) {
			t.Errorf("delete %s: %v %s", n, err, out)
		}
	}
}
