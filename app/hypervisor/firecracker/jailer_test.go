package firecracker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// owner is a file's uid, gid and permission bits.
type owner struct {
	uid, gid uint32
	perm     os.FileMode
}

func ownerOf(t *testing.T, p string) owner {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return owner{s.Uid, s.Gid, st.Mode().Perm()}
}

// TestJailerMode runs the driver through a jailer (the fake plays it): the API is reached
// on the socket inside the chroot with chroot-relative paths (the fake checks each one
// exists there), counters flow through the FIFO in the jail, and the jail is gone when the
// VM stops. Nothing outside the jail changes owner or mode: a kernel the jail can only
// read is hard-linked as it is; a seed it cannot read, and an initrd it could write, are
// copied in; the one writable disk is the VM's private copy.
func TestJailerMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the jailer's files change owner: needs root")
	}
	d, _ := fakeDriver(t)
	base := t.TempDir()
	d.Jailer = &Jailer{Binary: os.Args[0], UID: 65534, GID: 65534, ChrootBase: base, CgroupVersion: "2", Cgroups: []string{"cpu.max=50000 100000"}}
	d.Binary = "/usr/local/bin/firecracker"
	spec := testSpec(t)
	images := t.TempDir()
	write := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(images, name)
		if err := os.WriteFile(p, []byte(name), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		os.Chown(p, uid, 0)
		return p
	}
	kernel := write("vmlinux", 0o644, 0)    // shared by VMs, world-readable: linked as is
	initrd := write("initrd", 0o644, 65534) // the jail's uid owns it: linking would let it write
	seed := write("seed.iso", 0o640, 0)     // holds tokens: the jail cannot read the original
	spec.Kernel, spec.Initrd = kernel, initrd
	spec.Disks[1].Path = seed
	rootBase := spec.Disks[0].Path
	before := map[string]owner{}
	for _, p := range []string{kernel, initrd, seed, rootBase} {
		before[p] = ownerOf(t, p)
	}
	unchanged := func(when string) {
		t.Helper()
		for p, want := range before {
			if got := ownerOf(t, p); got != want {
				t.Errorf("%s: %s changed from %+v to %+v", when, p, want, got)
			}
		}
	}
	m, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	unchanged("after start")
	root := filepath.Join(base, "firecracker", spec.VMID, "root")
	for _, name := range []string{"vmlinux", "initrd", "rootfs.img", "seed.img", "metrics.fifo", "firecracker.log", "run/firecracker.socket"} {
		if _, err := os.Lstat(filepath.Join(root, name)); err != nil {
			t.Errorf("jail lacks %s: %v", name, err)
		}
	}
	same := func(a, b string) bool {
		sa, _ := os.Stat(a)
		sb, _ := os.Stat(b)
		return sa != nil && sb != nil && os.SameFile(sa, sb)
	}
	if !same(kernel, filepath.Join(root, "vmlinux")) {
		t.Error("a kernel the jail can only read was copied, not hard-linked")
	}
	for name, orig := range map[string]string{"initrd": initrd, "seed.img": seed} {
		p := filepath.Join(root, name)
		if same(orig, p) {
			t.Errorf("%s was hard-linked into the jail", orig)
		}
		if got := ownerOf(t, p); got != (owner{65534, 65534, 0o400}) {
			t.Errorf("the jail's copy %s is %+v", name, got)
		}
		if b, _ := os.ReadFile(p); string(b) != filepath.Base(orig) {
			t.Errorf("the jail's copy %s holds %q", name, b)
		}
	}
	private := filepath.Join(spec.Dir, rootCopy)
	if !same(private, filepath.Join(root, "rootfs.img")) || same(rootBase, private) {
		t.Error("the jail's root disk is not the VM's private copy")
	}
	if got := ownerOf(t, private); got.uid != 65534 || got.gid != 65534 {
		t.Errorf("the VM's private disk belongs to %d:%d, not the jail", got.uid, got.gid)
	}
	if c, err := m.Counters(context.Background()); err != nil || c.NetRxBytes != 100 {
		t.Errorf("counters through the jailed FIFO: %+v %v", c, err)
	}
	// A snapshot in the jail: firecracker writes its files where it can, inside.
	fm := m.(*machine)
	snap := t.TempDir()
	if err := fm.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := fm.Snapshot(context.Background(), snap, "j", false); err != nil {
		t.Fatalf("snapshot in the jail: %v", err)
	}
	fm.Resume(context.Background())
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
	unchanged("after stop")
	if b, _ := os.ReadFile(kernel); string(b) != "vmlinux" {
		t.Errorf("the kernel now holds %q", b)
	}
	// Restored through the jailer: the snapshot's files are put where the jail can open
	// them, and the disk copied back is the jail's again.
	r, err := d.Restore(context.Background(), spec, snap, "j")
	if err != nil {
		t.Fatalf("restore in the jail: %v", err)
	}
	defer func() { r.(*machine).Kill(); <-r.Done() }()
	if got := ownerOf(t, private); got.uid != 65534 || got.gid != 65534 {
		t.Errorf("after the restore the VM's disk belongs to %d:%d, not the jail", got.uid, got.gid)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(r.ConsolePath()); strings.Contains(string(b), "restored, page 0 gen 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the jailed restore did not load the snapshot's memory")
		}
	}
}

// TestJailerRefusesForeignWritableDisk: a writable disk that is not the VM's own copy is
// never handed to the jail.
func TestJailerRefusesForeignWritableDisk(t *testing.T) {
	j := &Jailer{UID: 65534, GID: 65534, ChrootBase: t.TempDir()}
	spec := testSpec(t)
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(kernel, []byte("k"), 0o644)
	spec.Kernel, spec.Initrd = kernel, ""
	spec.Disks = spec.Disks[:1] // the base image itself, writable
	before := ownerOf(t, spec.Disks[0].Path)
	if _, _, err := j.prepare("/usr/bin/firecracker", spec); err == nil || !strings.Contains(err.Error(), "the VM's own copy") {
		t.Errorf("prepare with an operator's file as writable disk: %v", err)
	}
	if got := ownerOf(t, spec.Disks[0].Path); got != before {
		t.Errorf("the base image changed from %+v to %+v", before, got)
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
