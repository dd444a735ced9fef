package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/hypervisor/qemu"
	"hearth/internal/testkit/storetest"
)

// TestImageInputsConfined reproduces the host-file read: a VM's kernel, initrd and rootfs
// must be regular files under the image directories, with links followed only inside
// them. Paths outside are refused with one answer whether or not they exist.
func TestImageInputsConfined(t *testing.T) {
	base := t.TempDir()
	images := filepath.Join(base, "images")
	os.MkdirAll(filepath.Join(images, "debian"), 0o755)
	kernel := filepath.Join(images, "debian", "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	os.Symlink(kernel, filepath.Join(images, "current"))                        // a link inside: fine
	os.Symlink("/etc/passwd", filepath.Join(images, "passwd"))                  // a link out
	os.Symlink("../outside", filepath.Join(images, "up"))                       // a relative link out
	os.WriteFile(filepath.Join(base, "outside"), []byte("secret"), 0o600)       // what it points at
	syscall.Mkfifo(filepath.Join(images, "fifo"), 0o600)                        // not a file
	syscall.Mknod(filepath.Join(images, "zero"), syscall.S_IFCHR|0o600, 1<<8|5) // /dev/zero's twin
	linkedDir := filepath.Join(base, "linked")
	os.Symlink(images, linkedDir) // the image dir named through a link

	dirs := ImageDirs{images, linkedDir}
	outside := "is outside the image directories (" + images + ", " + linkedDir + ")"
	for _, c := range []struct{ path, want string }{
		{"/etc/shadow", "/etc/shadow " + outside},
		{"/etc/no-such-file", "/etc/no-such-file " + outside}, // the same answer: nothing learnt
		{"/proc/self/environ", "/proc/self/environ " + outside},
		{"/dev/zero", "/dev/zero " + outside},
		{"/dev/vda", "/dev/vda " + outside},
		{images + "/../outside", base + "/outside " + outside},
		{images, images + " " + outside},
		{filepath.Join(images, "passwd"), "links outside the image directory"},
		{filepath.Join(images, "up"), "links outside the image directory"},
		{filepath.Join(images, "fifo"), "is not a regular file"},
		{filepath.Join(images, "zero"), "is not a regular file"},
		{filepath.Join(images, "debian"), "is not a regular file"},
		{filepath.Join(images, "missing"), "does not exist"},
	} {
		if got, err := dirs.Resolve(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Resolve(%s) = %q, %v; want an error with %q", c.path, got, err, c.want)
		}
	}
	for _, p := range []string{kernel, filepath.Join(images, "current"), filepath.Join(linkedDir, "debian", "vmlinuz")} {
		if got, err := dirs.Resolve(p); err != nil || got != kernel {
			t.Errorf("Resolve(%s) = %q, %v; want %s", p, got, err, kernel)
		}
	}
	if _, err := (ImageDirs{}).Resolve(kernel); err == nil {
		t.Error("no image dirs, and a kernel is accepted")
	}

	// Through the service: create and edit refuse, and so does start when a file was
	// swapped for a link out after the VM was defined.
	db := storetest.SQLite(t)
	s := NewService(db, testRules(t), t.TempDir()).WithRuntime(Runtime{Drivers: map[string]hypervisor.Driver{"qemu": &qemu.Driver{}},
		Default: "qemu", ImageDirs: dirs})
	ctx := context.Background()
	for _, f := range []struct{ field, path string }{{"kernel", "/etc/shadow"}, {"initrd", "/proc/self/environ"}, {"rootfs", "/dev/vda"}} {
		spec := app.VMSpec{Name: "reader", Kernel: kernel}
		switch f.field {
		case "kernel":
			spec.Kernel = f.path
		case "initrd":
			spec.Initrd = f.path
		case "rootfs":
			spec.Rootfs = f.path
		}
		if _, _, err := s.Create(ctx, spec, operator); !strings.Contains(app.ErrorFields(err)[f.field], "outside the image directories") {
			t.Errorf("create with %s=%s: %v", f.field, f.path, err)
		}
	}
	swap := filepath.Join(images, "swap")
	os.WriteFile(swap, []byte("kernel"), 0o644)
	v, _, err := s.Create(ctx, app.VMSpec{Name: "swapped", Kernel: swap}, operator)
	if err != nil {
		t.Fatal(err)
	}
	shadow := "/etc/shadow"
	if _, err := s.Update(ctx, v.ID, app.VMUpdate{Rootfs: &shadow}, operator); !strings.Contains(app.ErrorFields(err)["rootfs"], "outside") {
		t.Errorf("edit to rootfs=/etc/shadow: %v", err)
	}
	os.Remove(swap)
	os.Symlink("/etc/shadow", swap)
	if _, err := s.Start(ctx, v.ID, operator); app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "links outside") {
		t.Errorf("start after the kernel became a link to /etc/shadow: %v", err)
	}
}
