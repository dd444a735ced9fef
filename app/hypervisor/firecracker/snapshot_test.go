package firecracker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/app/hypervisor"
)

// TestSnapshotAgainstSpec: pause, a full snapshot, a run that dirties the guest's memory
// and writes its disk, a diff snapshot, and restores of each, every request checked
// against Firecracker's swagger spec by the fake, which also keeps Firecracker's rules
// (snapshot only when paused, diff only with dirty-page tracking, load only on a fresh
// process). The diff's memory is whole (its dirty pages laid over the full one's), and
// each restore brings back its snapshot's memory and disk.
func TestSnapshotAgainstSpec(t *testing.T) {
	d, _ := fakeDriver(t)
	ctx := context.Background()
	spec := testSpec(t)
	m0, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	m := m0.(*machine)
	t.Cleanup(func() { m.Kill() })
	disk := filepath.Join(spec.Dir, rootCopy)

	// Firecracker refuses a snapshot of a running VM: so does the fake (and says so).
	full := t.TempDir()
	if _, err := m.Snapshot(ctx, full, "t", false); err == nil || !strings.Contains(err.Error(), "pause it first") {
		t.Fatalf("snapshot of a running VM: %v", err)
	}

	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	kind, err := m.Snapshot(ctx, full, "t", true) // diff asked, but there is no base yet
	if err != nil || kind != "full" {
		t.Fatalf("first snapshot: %q %v", kind, err)
	}
	if err := m.Resume(ctx); err != nil { // the guest runs: page 1 becomes gen 1
		t.Fatal(err)
	}
	os.WriteFile(disk, []byte("written after the full snapshot"), 0o644)
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	diff := t.TempDir()
	if kind, err = m.Snapshot(ctx, diff, "t", true); err != nil || kind != "diff" {
		t.Fatalf("second snapshot: %q %v", kind, err)
	}
	m.Resume(ctx)
	for _, dir := range []string{full, diff} {
		for _, f := range []string{StateFile, MemoryFile, rootCopy} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("snapshot file: %v", err)
			}
		}
	}
	m.Kill()
	<-m.Done()
	os.WriteFile(disk, []byte("written after both"), 0o644)

	for _, c := range []struct {
		dir, pages, disk string
	}{
		{diff, "page 0 gen 0; page 1 gen 1; page 2 gen 0; page 3 gen 0", "written after the full snapshot"},
		{full, "page 0 gen 0; page 1 gen 0; page 2 gen 0; page 3 gen 0", "base image"},
	} {
		r, err := d.Restore(ctx, spec, c.dir, "t")
		if err != nil {
			t.Fatalf("restore %s: %v", c.dir, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(r.ConsolePath())
			if strings.Contains(string(b), "restored, "+c.pages) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restore of %s: the guest's memory is not the snapshot's; console:\n%s", filepath.Base(c.dir), b)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if b, _ := os.ReadFile(disk); string(b) != c.disk {
			t.Errorf("disk after the restore: %q, want %q", b, c.disk)
		}
		// The restored VM runs: it pauses and snapshots again (as full: a new run).
		if err := r.(hypervisor.Pauser).Pause(ctx); err != nil {
			t.Errorf("pause a restored VM: %v", err)
		}
		again := t.TempDir()
		if kind, err := r.(hypervisor.Snapshotter).Snapshot(ctx, again, "t", true); err != nil || kind != "full" {
			t.Errorf("snapshot of a restored VM: %q %v", kind, err)
		}
		r.(*machine).Kill()
		<-r.Done()
	}
}

// TestOverlayLaysDataOverBase: the data regions of a sparse file replace those bytes of
// the base; its holes leave the base as it was.
func TestOverlayLaysDataOverBase(t *testing.T) {
	dir := t.TempDir()
	base, diff := filepath.Join(dir, "base"), filepath.Join(dir, "diff")
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = 'b'
	}
	os.WriteFile(base, b, 0o600)
	f, _ := os.Create(diff)
	f.Truncate(3 << 20)
	f.WriteAt([]byte(strings.Repeat("d", 4096)), 1<<20)
	f.Close()
	if err := overlay(diff, base); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(base)
	if len(got) != 3<<20 || got[0] != 'b' || got[1<<20] != 'd' || got[1<<20+4095] != 'd' || got[1<<20+4096] != 'b' || got[3<<20-1] != 'b' {
		t.Errorf("overlay: len %d, bytes %c %c %c %c", len(got), got[0], got[1<<20], got[1<<20+4096], got[len(got)-1])
	}
}
