package qemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hearth/app/hypervisor"
	"hearth/internal/testkit/consoletest"
	"hearth/internal/testkit/qemutest"
)

// TestSerialConsole: a real guest with a shell on ttyS0. A command typed into the console
// runs (its random marker comes back computed, not echoed); two viewers see the same
// bytes; the manager lets go (as at a restart) and a new one attaches: the history is
// there and the shell still answers. console.log has the whole session.
func TestSerialConsole(t *testing.T) {
	bin := qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	dir := t.TempDir()
	base := filepath.Join(t.TempDir(), "base.img")
	os.WriteFile(base, make([]byte, 4<<20), 0o644)
	d := &Driver{Binary: bin}
	spec := hypervisor.Spec{VMID: "c1", Name: "console-test", VCPUs: 1, MemoryMiB: 256, Kernel: kernel, Initrd: initrd,
		BootArgs: "console=ttyS0 panic=-1 rdinit=/init", Disks: []hypervisor.Disk{{ID: "rootfs", Path: base, Root: true}},
		Dir: dir, Console: filepath.Join(dir, "console.log")}
	ctx := context.Background()
	m, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.(*machine).Kill(); <-m.Done() })
	hub := m.(hypervisor.Consoler).Console()
	a, hist := hub.Join()
	b, _ := hub.Join()
	// -S held the guest until the console was there: the kernel's first line is logged.
	boot := append(hist, consoletest.Expect(t, a, "HEARTH-MARKER: booted", 90*time.Second)...)
	if !bytes.Contains(boot, []byte("Linux version")) {
		t.Errorf("the kernel's first lines are not in the console:\n%.400s", boot)
	}
	consoletest.Expect(t, b, "HEARTH-MARKER: booted", 5*time.Second)

	mark := make([]byte, 4)
	rand.Read(mark)
	x := hex.EncodeToString(mark)
	// The shell prints the marker joined from two halves: an echo of the typed line alone
	// never contains it.
	hub.Write([]byte("\necho M-" + x[:4] + "''" + x[4:] + "-K\n"))
	gotA := consoletest.Expect(t, a, "M-"+x+"-K", 60*time.Second)
	gotB := consoletest.Expect(t, b, "M-"+x+"-K", 5*time.Second)
	if !bytes.HasSuffix(gotA, gotB) && !bytes.HasSuffix(gotB, gotA) {
		t.Errorf("two viewers saw different bytes:\n%q\n%q", gotA, gotB)
	}

	// A manager restart: this one lets go, the next attaches to the same QEMU.
	m.(hypervisor.Releaser).Release()
	m2, err := d.Attach(ctx, spec, m.PID(), m.Identity())
	if err != nil {
		t.Fatal(err)
	}
	hub2 := m2.(hypervisor.Consoler).Console()
	c, hist := hub2.Join()
	if !bytes.Contains(hist, []byte("M-"+x+"-K")) {
		t.Errorf("after the restart, the history lacks the last command's output:\n%s", hist)
	}
	if !hub2.WaitConnected(10 * time.Second) {
		t.Fatal("the new manager's hub did not connect")
	}
	hub2.Write([]byte("echo AGAIN-" + x[:4] + "''" + x[4:] + "\n"))
	consoletest.Expect(t, c, "AGAIN-"+x, 60*time.Second)
	m2.(hypervisor.Releaser).Release()
	log, _ := os.ReadFile(spec.Console)
	if !bytes.Contains(log, []byte("Linux version")) || !bytes.Contains(log, []byte("AGAIN-"+x)) {
		t.Errorf("console.log lacks the boot or the session:\n%s", log[max(0, len(log)-600):])
	}
}
