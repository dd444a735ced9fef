package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hearth/app/console"
	"hearth/app/hypervisor"
	"hearth/internal/testkit/consoletest"
	"hearth/internal/testkit/qemutest"
)

var uptimeLine = regexp.MustCompile(`UP=([0-9.]+)`)

// uptime asks the guest's shell for /proc/uptime on viewer v.
func uptime(t *testing.T, hub interface{ Write([]byte) (int, error) }, v *console.Viewer, tag string) float64 {
	t.Helper()
	hub.Write([]byte("echo " + tag + "-''UP=$(cut -d' ' -f1 /proc/uptime)=PU-''" + tag + "\n"))
	out := consoletest.Expect(t, v, "=PU-"+tag, 60*time.Second)
	m := uptimeLine.FindSubmatch(out[bytes.LastIndex(out, []byte(tag+"-UP=")):])
	if m == nil {
		t.Fatalf("no uptime in %q", out)
	}
	f, _ := strconv.ParseFloat(string(m[1]), 64)
	return f
}

// TestSnapshotRestore: a real guest with a shell writes a marker to its memory (a file on
// its initramfs) and to its disk (a sector of vda, the overlay), is paused (its uptime
// stands still), snapshotted and resumed; it writes a second pair of markers and is
// killed. Restored, it is the guest of the snapshot: the first markers are there, on disk
// too once its caches are dropped, the second are not, and its uptime continues from the
// snapshot's, not from the wall clock.
func TestSnapshotRestore(t *testing.T) {
	bin := qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	dir := t.TempDir()
	base := filepath.Join(t.TempDir(), "base.img")
	os.WriteFile(base, make([]byte, 4<<20), 0o644)
	d := &Driver{Binary: bin}
	spec := hypervisor.Spec{VMID: "s1", Name: "snapshot-test", VCPUs: 1, MemoryMiB: 256, Kernel: kernel, Initrd: initrd,
		BootArgs: "console=ttyS0 panic=-1 rdinit=/init", Disks: []hypervisor.Disk{{ID: "rootfs", Path: base, Root: true}},
		Dir: dir, Console: filepath.Join(dir, "console.log")}
	ctx := context.Background()
	m0, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	m := m0.(*machine)
	t.Cleanup(func() { m.Kill(); <-m.Done() })
	hub := m.Console()
	v, _ := hub.Join()
	consoletest.Expect(t, v, "HEARTH-MARKER: booted", 90*time.Second)
	hub.Write([]byte("\necho one > /m1; echo DISK-''ONE | dd of=/dev/vda bs=512 seek=0 conv=notrunc,fsync 2>/dev/null; echo W1-''DONE\n"))
	consoletest.Expect(t, v, "W1-DONE", 60*time.Second)

	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status(ctx); st != "paused" {
		t.Errorf("status after pause: %q", st)
	}
	snap := filepath.Join(t.TempDir(), "snap")
	os.Mkdir(snap, 0o700)
	tag := hypervisor.SnapshotTag("first")
	took := time.Now()
	kind, err := m.Snapshot(ctx, snap, tag, false)
	if err != nil {
		t.Fatal(err)
	}
	tookSnap := time.Since(took)
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(snap, StateFile))
	if err != nil || kind != "full" {
		t.Fatalf("state file: %v, kind %q", err, kind)
	}
	t.Logf("snapshot of a 256 MiB guest: %.2f s paused, state %d bytes", tookSnap.Seconds(), fi.Size())
	atSnap := uptime(t, hub, v, "S")

	hub.Write([]byte("echo two > /m2; echo DISK-''TWO | dd of=/dev/vda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null; echo W2-''DONE\n"))
	consoletest.Expect(t, v, "W2-DONE", 60*time.Second)
	m.Kill()
	<-m.Done()
	time.Sleep(8 * time.Second) // the wall clock moves on; the guest's uptime must not have

	restoredAt := time.Now()
	r0, err := d.Restore(ctx, spec, snap, tag)
	if err != nil {
		t.Fatal(err)
	}
	r := r0.(*machine)
	t.Cleanup(func() { r.Kill(); <-r.Done() })
	t.Logf("restore to running: %.2f s", time.Since(restoredAt).Seconds())
	if st, _ := r.Status(ctx); st != "running" {
		t.Errorf("status after restore: %q", st)
	}
	rhub := r.Console()
	rv, _ := rhub.Join()
	after := uptime(t, rhub, rv, "R")
	t.Logf("guest uptime: %.1f s after the snapshot, %.1f s after the restore (%.1f s of wall clock later)", atSnap, after, time.Since(took).Seconds())
	if after < atSnap-1 || after > atSnap+time.Since(took).Seconds()-6 {
		t.Errorf("uptime after restore %.1f s: want it to continue from the snapshot's (%.1f s), not from the wall clock", after, atSnap)
	}
	rhub.Write([]byte("echo 3 > /proc/sys/vm/drop_caches; ls /m1 /m2 2>&1; dd if=/dev/vda bs=512 count=2 2>/dev/null | tr -d '\\000'; echo; echo C-''DONE\n"))
	out := string(consoletest.Expect(t, rv, "C-DONE", 60*time.Second))
	if !strings.Contains(out, "/m1") || !strings.Contains(out, "/m2: No such file") {
		t.Errorf("memory after restore: want /m1 and no /m2:\n%s", out)
	}
	if !strings.Contains(out, "DISK-ONE") || strings.Contains(out, "DISK-TWO") {
		t.Errorf("disk after restore: want the first marker and not the second:\n%s", out)
	}

	// Dropping the snapshot removes its disk part from the overlay, running or not.
	if err := d.DropSnapshot(ctx, spec, r, tag); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	<-r.Done()
	if _, err := d.Restore(ctx, spec, snap, tag); err == nil || !strings.Contains(err.Error(), "revert the disk") {
		t.Errorf("restore of a dropped snapshot: %v", err)
	}
	if err := d.DropSnapshot(ctx, spec, nil, tag); err != nil {
		t.Errorf("dropping a dropped snapshot again: %v", err)
	}
}
