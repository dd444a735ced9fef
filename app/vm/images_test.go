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

// TestImagesPerNode (PostgreSQL): an image is its node's. A VM is made on this node from
// this node's image of that name; with none here, the refusal names the nodes that have
// one (and in which state); the same name on two nodes is two images.
func TestImagesPerNode(t *testing.T) {
	db := storetest.Postgres(t)
	ctx := context.Background()
	for _, im := range []*app.Image{
		{Name: "deb", Node: "beta", State: app.ImageReady, Source: app.ImageImported, Kernel: "/beta/vmlinuz"},
		{Name: "deb", Node: "gamma", State: app.ImageBuilding, Source: app.ImageImported},
		{Name: "deb", Node: "delta", State: app.ImageReady, Source: app.ImageImported, Kernel: "/delta/vmlinuz"},
	} {
		if err := db.CreateImage(ctx, im, nil); err != nil {
			t.Fatal(err)
		}
	}
	alpha := NewService(db, Rules{}, t.TempDir()).WithNode("alpha")
	_, _, err := alpha.Create(ctx, app.VMSpec{Name: "from-deb", Image: "deb"}, operator)
	msg := app.ErrorFields(err)["image"]
	if app.ErrorCode(err) != app.EINVALID || !strings.Contains(msg, `node alpha has no image named "deb"`) ||
		!strings.Contains(msg, "beta, delta, gamma (building)") {
		t.Errorf("a VM on alpha from an image alpha lacks: %v (%q)", err, msg)
	}
	delta := NewService(db, Rules{}, t.TempDir()).WithNode("delta")
	v, _, err := delta.Create(ctx, app.VMSpec{Name: "from-deb", Image: "deb"}, operator)
	if err != nil {
		t.Fatal(err)
	}
	if v.Node != "delta" || v.Image != "deb" {
		t.Errorf("the VM made on delta: node %q image %q", v.Node, v.Image)
	}
	if im, _ := db.Image(ctx, "delta", "deb"); len(im.UsedBy) != 1 {
		t.Errorf("delta's deb is used by %v", im.UsedBy)
	}
	if im, _ := db.Image(ctx, "beta", "deb"); len(im.UsedBy) != 0 {
		t.Errorf("beta's deb is used by %v (the VM is delta's)", im.UsedBy)
	}
	if err := db.DeleteImage(ctx, "beta", "deb", nil); err != nil {
		t.Errorf("beta's deb, which no VM uses: %v", err)
	}
	if err := db.DeleteImage(ctx, "delta", "deb", nil); app.ErrorCode(err) != app.ECONFLICT {
		t.Errorf("delta's deb, used by from-deb: %v", err)
	}
}
