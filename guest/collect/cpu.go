package collect

import (
	"github.com/prometheus/procfs"

	"hearth/guest/api"
)

// cpuTimes converts procfs's CPU line. Guest and GuestNice are left out: the kernel already
// counts them inside User and Nice.
func cpuTimes(s procfs.CPUStat) api.CPUTimes {
	return api.CPUTimes{User: s.User, Nice: s.Nice, System: s.System, Idle: s.Idle, Iowait: s.Iowait,
		IRQ: s.IRQ, SoftIRQ: s.SoftIRQ, Steal: s.Steal}
}

// busy is time doing work: user+nice+system+irq+softirq+steal.
func busy(t api.CPUTimes) float64 { return t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ + t.Steal }

// total is busy plus idle plus iowait (iowait is idle time waiting on I/O).
func total(t api.CPUTimes) float64 { return busy(t) + t.Idle + t.Iowait }

// backwards reports whether any counter in cur is below prev: a CPU went offline, the
// counters wrapped, or the VM was restored from a snapshot. Deltas across that are
// meaningless, so the caller starts a new baseline instead.
func backwards(prev, cur api.CPUTimes) bool {
	return cur.User < prev.User || cur.Nice < prev.Nice || cur.System < prev.System || cur.Idle < prev.Idle ||
		cur.Iowait < prev.Iowait || cur.IRQ < prev.IRQ || cur.SoftIRQ < prev.SoftIRQ || cur.Steal < prev.Steal
}

// cpuShares computes usage and per-mode shares in percent from two readings:
// CPU% = 100 × Δbusy / Δtotal. It returns ok=false when there is no usable interval (no
// time passed, or a counter went backwards).
func cpuShares(prev, cur api.CPUTimes) (api.CPU, bool) {
	if backwards(prev, cur) {
		return api.CPU{}, false
	}
	dt := total(cur) - total(prev)
	if dt <= 0 {
		return api.CPU{}, false
	}
	pct := func(d float64) *float64 {
		v := clamp(100 * d / dt)
		return &v
	}
	return api.CPU{
		UsagePercent:   pct(busy(cur) - busy(prev)),
		UserPercent:    pct(cur.User - prev.User),
		NicePercent:    pct(cur.Nice - prev.Nice),
		SystemPercent:  pct(cur.System - prev.System),
		IdlePercent:    pct(cur.Idle - prev.Idle),
		IowaitPercent:  pct(cur.Iowait - prev.Iowait),
		IRQPercent:     pct(cur.IRQ - prev.IRQ),
		SoftIRQPercent: pct(cur.SoftIRQ - prev.SoftIRQ),
		StealPercent:   pct(cur.Steal - prev.Steal),
	}, true
}

// clamp keeps a percentage within [0, 100] against float rounding.
func clamp(v float64) float64 {
	switch {
	case v < 0 || v != v:
		return 0
	case v > 100:
		return 100
	}
	return v
}
