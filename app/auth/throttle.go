package auth

import (
	"sync"
	"time"
)

// Throttle limits failed sign-ins: after Max failures within Window from one address, or
// for one user name, further attempts are refused until the oldest failure ages out. It
// lives in memory: a restart forgives, which is acceptable for a single-host manager.
type Throttle struct {
	Max    int
	Window time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	fails map[string][]time.Time
}

// NewThrottle returns a Throttle allowing max failures per window.
func NewThrottle(max int, window time.Duration) *Throttle {
	return &Throttle{Max: max, Window: window, Now: time.Now, fails: map[string][]time.Time{}}
}

func keys(addr, name string) [2]string { return [2]string{"addr:" + addr, "user:" + name} }

// prune drops failures older than the window; the caller holds mu.
func (t *Throttle) prune(k string, now time.Time) []time.Time {
	fs := t.fails[k]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= t.Window {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(t.fails, k)
	} else {
		t.fails[k] = fs
	}
	return fs
}

// Blocked returns how long to wait before the next attempt for addr or name, 0 if none.
func (t *Throttle) Blocked(addr, name string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	var wait time.Duration
	for _, k := range keys(addr, name) {
		if fs := t.prune(k, now); len(fs) >= t.Max {
			if w := t.Window - now.Sub(fs[len(fs)-t.Max]); w > wait {
				wait = w
			}
		}
	}
	return wait
}

// Fail records a failed attempt.
func (t *Throttle) Fail(addr, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	for _, k := range keys(addr, name) {
		fs := t.prune(k, now)
		if len(fs) >= t.Max*2 { // bound memory per key; more adds no information
			fs = fs[1:]
		}
		t.fails[k] = append(fs, now)
	}
	if len(t.fails) > 100_000 { // an address flood: forget the oldest picture rather than grow
		t.fails = map[string][]time.Time{}
	}
}

// Succeed clears the user's failures; the address's remain, so one valid account cannot be
// used to reset an address that is guessing at others.
func (t *Throttle) Succeed(addr, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, "user:"+name)
}
