package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"hearth/app"
)

// SweepOrphans runs at manager start, before anything is created: it removes what a crash
// (kill -9, power loss) left in the data dir. A VM's seed is written before its record, so
// a create cut short leaves a directory no record owns, holding tokens and a private host
// key; a seed or disk copy cut short leaves its staging file. It returns what it removed.
// The data dir must not be in use by another manager (the caller holds its lock).
func (s *Service) SweepOrphans(ctx context.Context) ([]string, error) {
	if s.dataDir == "" {
		return nil, nil
	}
	vms, err := s.db.VMs(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, v := range vms {
		known[v.ID] = true
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
		if s.seeder != nil {
			left, err := s.seeder.RemoveTemp(s.files(e.Name()).Dir)
			removed = append(removed, left...)
			if err != nil {
				return removed, err
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
	}
	return removed, nil
}
