package firecracker

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestJailerMode runs the driver through a jailer (the fake plays it): the chroot holds the
// images as hard links owned by the jail's uid/gid, the API is reached on the socket inside
// it with chroot-relative paths (the fake checks each one exists there), counters flow
// through the FIFO in the jail, and the jail is gone when the VM stops.
func TestJailerMode(t *testing.T) {
	d, _ := fakeDriver(t)
	base := t.TempDir()
	d.Jailer = &Jailer{Binary: os.Args[0], UID: 65534, GID: 65534, ChrootBase: base, CgroupVersion: "2", Cgroups: []string{"cpu.max=50000 100000"}}
	d.Binary = "/usr/local/bin/firecracker"
	spec := testSpec(t)
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	seed := filepath.Join(t.TempDir(), "seed.iso")
	os.WriteFile(seed, []byte("seed"), 0o644)
	spec.Kernel, spec.Initrd = kernel, ""
	spec.Disks[1].Path = seed
	m, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "firecracker", spec.VMID, "root")
	for _, name := range []string{"vmlinux", "rootfs.img", "seed.img", "metrics.fifo", "firecracker.log", "run/firecracker.socket"} {
		st, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("jail lacks %s: %v", name, err)
			continue
		}
		if s := st.Sys().(*syscall.Stat_t); name != "run/firecracker.socket" && (s.Uid != 65534 || s.Gid != 65534) {
			t.Errorf("%s belongs to %d:%d", name, s.Uid, s.Gid)
		}
	}
	a, _ := os.Stat(kernel)
	b, _ := os.Stat(filepath.Join(root, "vmlinux"))
	if !os.SameFile(a, b) {
		t.Error("the kernel was copied, not hard-linked, on one filesystem")
	}
	if c, err := m.Counters(context.Background()); err != nil || c.NetRxBytes != 100 {
		t.Errorf("counters through the jailed FIFO: %+v %v", c, err)
	}
	if err := m.Stop(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := os.Stat(filepath.Dir(root)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the jail outlived its VM")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJailerArgs(t *testing.T) {
	j := &Jailer{Binary: "/usr/bin/jailer", UID: 123, GID: 100, CgroupVersion: "2", Cgroups: []string{"cpu.weight=50"}}
	got := j.args("/usr/bin/firecracker", "vm1")
	want := []string{"--id", "vm1", "--exec-file", "/usr/bin/firecracker", "--uid", "123", "--gid", "100",
		"--chroot-base-dir", "/srv/jailer", "--cgroup-version", "2", "--cgroup", "cpu.weight=50", "--", "--api-sock", "/run/firecracker.socket"}
	if len(got) != len(want) {
		t.Fatalf("args %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("args %q, want %q", got, want)
		}
	}
}
