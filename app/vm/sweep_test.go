package vm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"hearth/app"
	"hearth/internal/testkit/storetest"
)

// TestSweepRemovesSeedsOfRunsThatAreOver: after a crash the seed a stopped VM ran with (it
// holds tokens and a private host key) and a render cut short in its run dir are removed;
// the seed of a VM still running stays for the re-attach; a directory no record owns goes.
func TestSweepRemovesSeedsOfRunsThatAreOver(t *testing.T) {
	db := storetest.SQLite(t)
	dir := t.TempDir()
	s := NewService(db, Rules{}, dir)
	ctx := context.Background()
	write := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, []byte("seed"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []*app.VM{{ID: "stoppedvm0000001", Name: "stopped", State: app.VMStopped},
		{ID: "runningvm0000001", Name: "running", State: app.VMRunning}} {
		v.VCPUs, v.MemoryMiB, v.MAC = 1, 64, "02:00:00:00:00:01"
		if err := db.CreateVM(ctx, v, "h"+v.ID, nil); err != nil {
			t.Fatal(err)
		}
		write(app.FilesOf(dir, v.ID).RunSeed())
	}
	write(filepath.Join(app.FilesOf(dir, "orphanvm00000001").Dir, "x"))
	removed, err := s.SweepOrphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(app.FilesOf(dir, "stoppedvm0000001").RunSeed()); !os.IsNotExist(err) {
		t.Errorf("the stopped VM's seed is left: %v (removed %v)", err, removed)
	}
	if _, err := os.Stat(app.FilesOf(dir, "runningvm0000001").RunSeed()); err != nil {
		t.Errorf("the running VM's seed was removed: %v", err)
	}
	if _, err := os.Stat(app.FilesOf(dir, "orphanvm00000001").Dir); !os.IsNotExist(err) {
		t.Errorf("the orphan directory is left: %v", err)
	}
	if len(removed) != 2 {
		t.Errorf("removed %v", removed)
	}
}
