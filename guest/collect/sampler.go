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

// FirstWindow is what the first CPU share is measured over: short, so that an agent
// answers with a CPU figure a moment after it starts (USER_HZ is 100, so a 250 ms window
// still resolves 4 % of one CPU).
const FirstWindow = 250 * time.Millisecond

// Prime takes the baseline and, FirstWindow later (or one interval, if shorter), the first
// full sample. An agent that serves only after Prime never answers without a CPU figure.
func (s *Sampler) Prime(ctx context.Context) {
	s.Sample()
	t := time.NewTimer(min(FirstWindow, s.interval))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	s.Sample()
}

// Run samples every interval until ctx ends, priming first when Prime has not run.
func (s *Sampler) Run(ctx context.Context) {
	s.mu.RLock()
	primed := s.have && s.latest != nil && s.latest.CPUUsagePercent != nil
	s.mu.RUnlock()
	if !primed {
		s.Prime(ctx)
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}
