package auth

import (
	"log/slog"
	"sort"
	"sync"
	"time"

	"hearth/app"
)

// Throttle limits failed sign-ins, as Django-axes and Grafana do, without letting an
// attacker lock the rightful user out:
//
//   - per (address, name): Max failures within Window, then that address waits for that name;
//   - per address: MaxAddr failures, whatever the names (one address spraying many accounts);
//   - per name, from anywhere: once Max failures pile up (a guess from many addresses),
//     addresses that have failed themselves wait; an address with no failures still gets
//     through, so the operator signing in from their own machine is never refused.
//
// It lives in memory, bounded: names are keyed by at most 64 bytes, each key keeps only the
// failures that matter for its limit, expired keys are swept, and the table holds at most
// MaxKeys (the oldest go first). A restart forgives, which is acceptable for one manager.
type Throttle struct {
	Max     int
	MaxAddr int
	Window  time.Duration
	MaxKeys int
	Now     func() time.Time
	Logger  *slog.Logger

	mu        sync.Mutex
	fails     map[string][]time.Time
	lastSweep time.Time
}

// NewThrottle returns a Throttle allowing max failures per (address, name) and per name,
// 3×max per address, in each window.
func NewThrottle(max int, window time.Duration) *Throttle {
	return &Throttle{Max: max, MaxAddr: 3 * max, Window: window, MaxKeys: 10_000, Now: time.Now,
		Logger: slog.New(slog.DiscardHandler), fails: map[string][]time.Time{}}
}

// maxNameKey bounds what of a typed name becomes a key: real names have at most 32 bytes.
const maxNameKey = 64

type keySet struct{ pair, addr, user string }

func keysFor(addr, name string) keySet {
	name = app.Clip(name, maxNameKey)
	return keySet{pair: "pair:" + addr + "\x00" + name, addr: "addr:" + addr, user: "user:" + name}
}

// recent returns the key's failures within the window, dropping older ones; mu is held.
func (t *Throttle) recent(k string, now time.Time) []time.Time {
	fs := t.fails[k]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= t.Window {
		i++
	}
	if i == len(fs) {
		delete(t.fails, k)
		return nil
	}
	if i > 0 {
		fs = append(fs[:0:0], fs[i:]...)
		t.fails[k] = fs
	}
	return fs
}

// waitFor is how long until the key is under limit again, 0 if it is now.
func (t *Throttle) waitFor(fs []time.Time, limit int, now time.Time) time.Duration {
	if len(fs) < limit {
		return 0
	}
	return t.Window - now.Sub(fs[len(fs)-limit])
}

// Blocked returns how long to wait before the next attempt of name from addr, 0 if none.
func (t *Throttle) Blocked(addr, name string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	k := keysFor(addr, name)
	addrFails := t.recent(k.addr, now)
	wait := max(t.waitFor(t.recent(k.pair, now), t.Max, now), t.waitFor(addrFails, t.MaxAddr, now))
	if len(addrFails) > 0 { // only addresses that have failed share in a name's lockout
		wait = max(wait, t.waitFor(t.recent(k.user, now), t.Max, now))
	}
	return wait
}

// Fail records a failed attempt.
func (t *Throttle) Fail(addr, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	k := keysFor(addr, name)
	for _, c := range []struct {
		key, kind string
		limit     int
	}{{k.pair, "address and name", t.Max}, {k.addr, "address", t.MaxAddr}, {k.user, "name", t.Max}} {
		fs := append(t.recent(c.key, now), now)
		if len(fs) > c.limit { // older failures add nothing to the limit's arithmetic
			fs = append(fs[:0:0], fs[len(fs)-c.limit:]...)
		}
		t.fails[c.key] = fs
		if len(fs) == c.limit {
			t.Logger.Warn("sign-in lockout", "by", c.kind, "addr", addr, "name", app.Clip(name, maxNameKey),
				"failures", c.limit, "for", t.Window)
		}
	}
	if len(t.fails) > t.MaxKeys || now.Sub(t.lastSweep) >= t.Window {
		t.sweep(now)
	}
}

// sweep drops expired keys and, if the table is still over its bound, the keys whose
// newest failure is oldest; mu is held.
func (t *Throttle) sweep(now time.Time) {
	t.lastSweep = now
	for k := range t.fails {
		t.recent(k, now)
	}
	if over := len(t.fails) - t.MaxKeys*9/10; len(t.fails) > t.MaxKeys && over > 0 {
		keys := make([]string, 0, len(t.fails))
		for k := range t.fails {
			keys = append(keys, k)
		}
		newest := func(k string) time.Time { fs := t.fails[k]; return fs[len(fs)-1] }
		sort.Slice(keys, func(i, j int) bool { return newest(keys[i]).Before(newest(keys[j])) })
		for _, k := range keys[:over] {
			delete(t.fails, k)
		}
	}
}

// Keys is how many keys the throttle holds (for tests and metrics).
func (t *Throttle) Keys() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.fails)
}

// Succeed clears the failures of this name from this address; the address's own count
// remains, so one valid account cannot be used to reset an address guessing at others.
func (t *Throttle) Succeed(addr, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, keysFor(addr, name).pair)
}
