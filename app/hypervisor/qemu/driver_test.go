package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/app/hypervisor"
	"hearth/internal/testkit/qemutest"
)

// waitConsole waits until the console file contains want, or the machine exits, or the
// deadline passes; it returns the console text.
func waitConsole(t *testing.T, m hypervisor.Machine, want string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(m.ConsolePath())
		if bytes.Contains(b, []byte(want)) {
			return string(b)
		}
		select {
		case <-m.Done():
			t.Fatalf("guest exited (%+v) before printing %q; console:\n%s", m.Exit(), want, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console within %s; console:\n%s", want, within, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestBootRealGuest boots Debian's cloud kernel with a busybox initramfs under QEMU (software
// emulation here: no /dev/kvm), sees the marker on the serial console, reads block counters
// over QMP, and stops the guest cleanly with the ACPI power button. The root disk is an
// overlay: the base image is unchanged afterwards although the guest wrote to its disk.
func TestBootRealGuest(t *testing.T) {
	bin := qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.Initramfs(t, mods)
	dir := t.TempDir()
	base := filepath.Join(t.TempDir(), "base.img")
	os.WriteFile(base, bytes.Repeat([]byte{0xab}, 4<<20), 0o644)
	seed := filepath.Join(t.TempDir(), "seed.img")
	os.WriteFile(seed, bytes.Repeat([]byte{0x5e}, 1<<20), 0o644)
	baseSum := sum(t, base)

	d := &Driver{Binary: bin}
	spec := hypervisor.Spec{VMID: "t1", Name: "boot-test", VCPUs: 1, MemoryMiB: 256, Kernel: kernel, Initrd: initrd,
		BootArgs: "console=ttyS0 panic=-1 rdinit=/init",
		Disks:    []hypervisor.Disk{{ID: "rootfs", Path: base, Root: true}, {ID: "seed", Path: seed, ReadOnly: true}}, Dir: dir, Console: filepath.Join(dir, "console.log")}
	ctx := context.Background()
	start := time.Now()
	m, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(context.Background(), time.Second) })
	console := waitConsole(t, m, "HEARTH-MARKER: booted", 90*time.Second)
	t.Logf("boot to marker under %s: %.1f s", d.accel(), time.Since(start).Seconds())
	if !strings.Contains(console, "HEARTH-DISKS: vda vdb") || strings.Contains(console, "INSMOD-FAILED") {
		t.Errorf("the guest did not see both virtio disks; console:\n%s", console)
	}
	if !strings.Contains(console, "power button: /dev/input/event") {
		t.Errorf("no power button in the guest; console:\n%s", console)
	}
	c, err := m.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.DiskReadBytes < 64*4096 || c.DiskWriteBytes == 0 || c.DiskReads == 0 {
		t.Errorf("block counters %+v: the guest read at least 256 KiB and wrote", c)
	}
	if st, err := m.(*machine).Status(ctx); err != nil || st != "running" {
		t.Errorf("status %q, %v", st, err)
	}
	stopAt := time.Now()
	if err := m.Stop(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	e := m.Exit()
	t.Logf("stop (ACPI power button) to exit: %.1f s", time.Since(stopAt).Seconds())
	console2, _ := os.ReadFile(m.ConsolePath())
	if e.Code != 0 || e.Signal != "" || !bytes.Contains(console2, []byte("HEARTH-POWEROFF")) {
		t.Errorf("exit %+v after %.1f s; want a clean poweroff from the power button; console tail:\n%s", e, time.Since(stopAt).Seconds(), tail(console2))
	}
	if sum(t, base) != baseSum {
		t.Error("the base image was written: the overlay did not protect it")
	}
	if _, err := os.Stat(filepath.Join(dir, overlayFile)); err != nil {
		t.Errorf("no overlay: %v", err)
	}
}

func tail(b []byte) string {
	s := string(b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// TestStartFailsClearly: a kernel that is not there gives QEMU's own complaint.
func TestStartFailsClearly(t *testing.T) {
	bin := qemutest.QEMU(t)
	d := &Driver{Binary: bin}
	dir := t.TempDir()
	_, err := d.Start(context.Background(), hypervisor.Spec{VMID: "x", VCPUs: 1, MemoryMiB: 64, Kernel: "/nonexistent/vmlinuz", Dir: dir, Console: filepath.Join(dir, "console.log")})
	if err == nil || !strings.Contains(err.Error(), "vmlinuz") {
		t.Errorf("err = %v", err)
	}
}
