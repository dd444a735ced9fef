package web

import (
	"context"
	"fmt"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/views/components"
	"hearth/views/pages"
)

var windows = map[string]time.Duration{"15m": 15 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour}

func (s *Server) metricsView(ctx context.Context, rec *app.VM, window string) *pages.MetricsView {
	if s.Metrics == nil {
		return nil
	}
	if _, ok := windows[window]; !ok {
		window = "15m"
	}
	now := time.Now()
	st := s.Metrics.StatusOf(rec, now)
	v := &pages.MetricsView{VMID: rec.ID, Badge: st.State, Window: window, Every: s.Metrics.Interval()}
	age := fmt.Sprintf("%.0f s ago", st.Age.Seconds())
	switch st.State {
	case metrics.StatusStopped:
		v.Label = "stopped"
	case metrics.StatusWaiting:
		v.Label = "waiting for first sample"
	case metrics.StatusHost:
		v.Label, v.Why = "agent missing · host fallback · "+age, st.Why
	case metrics.StatusStale:
		v.Label = "stale · last sample " + age
	default:
		v.Label = "live · " + st.Source + " · " + age
	}
	if sample, ok := s.Metrics.Latest(rec); ok && st.State != metrics.StatusStopped {
		v.Stats = stats(sample)
	}
	if rec.State == app.VMRunning || st.State == metrics.StatusStale {
		hist := s.Metrics.History(rec.ID, now.Add(-windows[window]))
		if window == "24h" { // longer than memory keeps: from the database
			if h, err := s.Metrics.Persisted(ctx, rec.ID, now.Add(-windows[window])); err == nil {
				hist = h
			}
		}
		v.Charts = []pages.Chart{
			chart("CPU %", hist, now, windows[window], func(x metrics.Sample) *float64 { return x.CPUPercent }),
			chart("Memory % (agent)", hist, now, windows[window], func(x metrics.Sample) *float64 { return x.MemPercent }),
		}
	}
	return v
}

func pct(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", *p)
}

func bps(p *float64) string {
	if p == nil {
		return "—"
	}
	v := *p
	for _, u := range []string{"B/s", "KiB/s", "MiB/s", "GiB/s"} {
		if v < 1024 || u == "GiB/s" {
			return fmt.Sprintf("%.1f %s", v, u)
		}
		v /= 1024
	}
	return ""
}

func stats(x metrics.Sample) []pages.Stat {
	mem := pages.Stat{Label: "Memory", Value: pct(x.MemPercent)}
	if x.Source == metrics.FromHost {
		mem = pages.Stat{Label: "Host RSS", Value: fmt.Sprintf("%.0f MiB", float64(x.HostRSSBytes)/(1<<20)), Hint: "hypervisor process, not guest memory"}
	}
	cpu := pages.Stat{Label: "CPU", Value: pct(x.CPUPercent)}
	if x.Source == metrics.FromHost {
		cpu.Hint = "hypervisor process"
	}
	return []pages.Stat{cpu, mem, {Label: "Net in", Value: bps(x.NetRxBps)}, {Label: "Net out", Value: bps(x.NetTxBps)},
		{Label: "Disk read", Value: bps(x.DiskReadBps)}, {Label: "Disk write", Value: bps(x.DiskWriteBps)}}
}

// points is one value of the samples as chart points; a sample without it breaks the line.
func points(hist []metrics.Sample, val func(metrics.Sample) *float64) []components.Point {
	out := make([]components.Point, len(hist))
	for i, x := range hist {
		out[i] = components.Point{At: x.Time, Missing: true}
		if v := val(x); v != nil {
			out[i].Value, out[i].Missing = *v, false
		}
	}
	return out
}

// chart is a percentage over the window; a pause longer than a twentieth of it (the VM was
// stopped, the manager was down) breaks the line rather than bridging it.
func chart(title string, hist []metrics.Sample, now time.Time, window time.Duration, val func(metrics.Sample) *float64) pages.Chart {
	return pages.Chart{Title: title, Max: "100", Empty: "no data in this window",
		Line: components.Line{Points: points(hist, val), Start: now.Add(-window), Window: window, Max: 100, MaxGap: window / 20}}
}

// sparkOf is the last 15 minutes of a percentage, with the latest value. A value older
// than staleAfter is not "current": the figure then says so.
func sparkOf(hist []metrics.Sample, now time.Time, staleAfter time.Duration, val func(metrics.Sample) *float64) pages.Spark {
	sp := pages.Spark{Value: "—", Line: components.Line{Points: points(hist, val), Start: now.Add(-15 * time.Minute), Window: 15 * time.Minute, Max: 100}}
	if n := len(hist); n > 0 {
		if v := val(hist[n-1]); v != nil {
			sp.Value = fmt.Sprintf("%.0f %%", *v)
			if now.Sub(hist[n-1].Time) > staleAfter {
				sp.Value += " (stale)"
			}
		}
	}
	return sp
}

// vmMetrics is GET /vms/{id}/metrics: the polled panel.
func (s *Server) vmMetrics(c echo.Context) error {
	rec, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	v := s.metricsView(c.Request().Context(), rec, c.QueryParam("window"))
	if v == nil {
		return app.Errorf(app.EUNAVAILABLE, "this manager collects no metrics")
	}
	return renderOK(c, pages.VMMetrics(*v))
}
