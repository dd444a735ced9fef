package metrics

import (
	"time"

	"hearth/app"
)

// Badge states: exactly one describes a VM's metrics at any moment.
const (
	StatusStopped = "stopped" // the VM is not running
	StatusWaiting = "waiting" // running, no sample yet
	StatusHost    = "host"    // agent missing: host fallback
	StatusLive    = "live"    // the agent answers
	StatusStale   = "stale"   // the last sample is too old to show as current
	StatusPaused  = "paused"  // the VM is paused: its agent is not polled
)

// Status is what the badge says.
type Status struct {
	State  string        `json:"status"`
	Source string        `json:"source,omitempty"`
	Age    time.Duration `json:"-"`
	Why    string        `json:"why,omitempty"` // why the agent did not answer
}

// StatusOf says which badge the VM gets now. A sample older than three intervals is
// stale: shown as such, never as current.
func (c *Collector) StatusOf(v *app.VM, now time.Time) Status {
	if v.State == app.VMPaused {
		return Status{State: StatusPaused, Source: FromPaused, Why: "the VM is paused"}
	}
	if v.State != app.VMRunning {
		return Status{State: StatusStopped}
	}
	s, ok := c.Latest(v)
	if !ok {
		return Status{State: StatusWaiting, Why: c.LastError(v.ID)}
	}
	age := now.Sub(s.Time)
	switch {
	case age > 3*c.opts.Interval:
		return Status{State: StatusStale, Source: s.Source, Age: age}
	case s.Source == FromHost:
		return Status{State: StatusHost, Source: s.Source, Age: age, Why: c.LastError(v.ID)}
	}
	return Status{State: StatusLive, Source: s.Source, Age: age}
}
