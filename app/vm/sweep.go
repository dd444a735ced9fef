package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"hearth/app"
)

// SweepOrphans runs at manager start, before anything is created: it removes what a crash
// (kill -9, power loss) left in the data dir: directories no record owns (a delete cut
// short), seeds and disk copies cut short (their staging files), and the seeds of runs
// that are over (a seed holds tokens and a private host key; the next start renders it
// again). It returns what it removed.
// The data dir must not be in use by another manager (the caller holds its lock).
func (s *Service) SweepOrphans(ctx context.Context) ([]string, error) {
	if s.dataDir == "" {
		return nil, nil
	}
	vms, err := s.db.VMs(ctx)
	if err != nil {
		return nil, err
	}
	// Snapshots a dead manager was taking never completed: their records say so, and
	// their temporary directories go below.
	if n, err := s.db.FailTakingSnapshots(ctx); err != nil {
		return nil, err
	} else if n > 0 && s.rt != nil {
		s.rt.Logger.Warn("snapshots left unfinished by the last manager were marked failed", "count", n)
	}
	known, busy := map[string]bool{}, map[string]bool{}
	for _, v := range vms {
		known[v.ID], busy[v.ID] = true, v.Busy()
	}
	root := app.VMsDir(s.dataDir)
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", root, err)
	}
	var removed []string
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		if !known[e.Name()] {
			if err := os.RemoveAll(p); err != nil {
				return removed, fmt.Errorf("remove orphan %s: %w", p, err)
			}
			removed = append(removed, p)
			continue
		}
		files := s.files(e.Name())
		if s.seeder != nil {
			for _, dir := range []string{files.Dir, files.Run()} {
				left, err := s.seeder.RemoveTemp(dir)
				removed = append(removed, left...)
				if err != nil {
					return removed, err
				}
			}
		}
		// A running VM's seed stays (the manager re-attaches to it); a stopped one's goes.
		if !busy[e.Name()] {
			if err := os.Remove(files.RunSeed()); err == nil {
				removed = append(removed, files.RunSeed())
			} else if !os.IsNotExist(err) {
				return removed, fmt.Errorf("remove %s: %w", files.RunSeed(), err)
			}
		}
		// Disk copies and overlays are made under <name>.tmp and renamed into place.
		tmps, _ := filepath.Glob(filepath.Join(s.files(e.Name()).Run(), "*.tmp"))
		for _, t := range tmps {
			if err := os.Remove(t); err != nil {
				return removed, fmt.Errorf("remove %s: %w", t, err)
			}
			removed = append(removed, t)
		}
		snaps, _ := filepath.Glob(filepath.Join(files.Snapshots(), ".*.tmp"))
		for _, t := range snaps {
			if err := os.RemoveAll(t); err != nil {
				return removed, fmt.Errorf("remove %s: %w", t, err)
			}
			removed = append(removed, t)
		}
	}
	return removed, nil
}
