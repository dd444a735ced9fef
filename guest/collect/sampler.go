package collect

import (
	"context"
	"sync"
	"time"

	"hearth/guest/api"
)

// Sampler reads the guest on an interval in the background and keeps the latest Snapshot,
// so a scrape only copies what is ready: its cost does not depend on how often it comes.
// CPU shares come from the delta between consecutive readings, never from one read of
// /proc/stat (which holds totals since boot).
type Sampler struct {
	reader   *Reader
	interval time.Duration
	version  string

	mu     sync.RWMutex
	latest *api.Snapshot
	prev   api.CPUTimes
	have   bool // prev holds a usable baseline
}

// NewSampler returns a sampler that reads with r every interval.
func NewSampler(r *Reader, interval time.Duration, version string) *Sampler {
	return &Sampler{reader: r, interval: interval, version: version}
}

// Sample takes one reading now and, with the previous one, makes the latest snapshot. A
// CPU counter that went backwards makes this reading the new baseline: the snapshot then
// has no CPU shares until the next one.
func (s *Sampler) Sample() *api.Snapshot {
	rd := s.reader.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := rd.snap
	snap.AgentVersion = s.version
	snap.IntervalSeconds = s.interval.Seconds()
	if rd.haveCPU {
		if s.have {
			if shares, ok := cpuShares(s.prev, rd.cpu); ok {
				shares.Count = snap.CPU.Count
				snap.CPU = shares
				snap.CPUUsagePercent = shares.UsagePercent
			}
		}
		s.prev, s.have = rd.cpu, true
	}
	s.latest = &snap
	return &snap
}

// Latest returns the newest snapshot with CPU shares, or nil before there is one.
func (s *Sampler) Latest() *api.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.latest
}

// Run samples until ctx ends: a baseline now, a first full sample after a second (so the
// agent is useful right after boot), then every interval.
func (s *Sampler) Run(ctx context.Context) {
	s.Sample()
	first := time.Second
	if s.interval < first {
		first = s.interval
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
			t.Reset(s.interval)
		}
	}
}
