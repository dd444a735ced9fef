package web

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/metrics"
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
	v := &pages.MetricsView{VMID: rec.ID, Badge: st.State, Window: window}
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
	if sample, ok := s.Metrics.Latest(rec.ID); ok && st.State != metrics.StatusStopped {
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
			chart("CPU %", hist, now, windows[window], 100, func(x metrics.Sample) *float64 { return x.CPUPercent }),
			chart("Memory % (agent)", hist, now, windows[window], 100, func(x metrics.Sample) *float64 { return x.MemPercent }),
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
	if x.Source == metrics.SourceHost {
		mem = pages.Stat{Label: "Host RSS", Value: fmt.Sprintf("%.0f MiB", float64(x.HostRSSBytes)/(1<<20)), Hint: "hypervisor process, not guest memory"}
	}
	cpu := pages.Stat{Label: "CPU", Value: pct(x.CPUPercent)}
	if x.Source == metrics.SourceHost {
		cpu.Hint = "hypervisor process"
	}
	return []pages.Stat{cpu, mem, {Label: "Net in", Value: bps(x.NetRxBps)}, {Label: "Net out", Value: bps(x.NetTxBps)},
		{Label: "Disk read", Value: bps(x.DiskReadBps)}, {Label: "Disk write", Value: bps(x.DiskWriteBps)}}
}

// chart scales samples into the 600×120 box: time on x over the window, value on y
// against max. Gaps in the data break the line rather than bridging them.
func chart(title string, hist []metrics.Sample, now time.Time, window time.Duration, max float64, val func(metrics.Sample) *float64) pages.Chart {
	c := pages.Chart{Title: title, Max: fmt.Sprintf("%.0f", max), Empty: "no data in this window"}
	var b strings.Builder
	var prev time.Time
	start := now.Add(-window)
	for _, x := range hist {
		v := val(x)
		if v == nil {
			prev = time.Time{}
			continue
		}
		px := 600 * x.Time.Sub(start).Seconds() / window.Seconds()
		py := 120 - 120*min(*v, max)/max
		cmd := "L"
		if prev.IsZero() || x.Time.Sub(prev) > window/20 {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f %.1f ", cmd, px, py)
		prev = x.Time
	}
	c.Path = strings.TrimSpace(b.String())
	return c
}

// sparkOf draws the last 15 minutes of a percentage in a 120×24 box, with the latest value.
// A value older than staleAfter is not "current": the figure then says so.
func sparkOf(hist []metrics.Sample, now time.Time, staleAfter time.Duration, val func(metrics.Sample) *float64) pages.Spark {
	sp := pages.Spark{Value: "—"}
	var b strings.Builder
	start, window := now.Add(-15*time.Minute), (15 * time.Minute).Seconds()
	cmd := "M"
	for _, x := range hist {
		v := val(x)
		if v == nil {
			cmd = "M"
			continue
		}
		fmt.Fprintf(&b, "%s%.1f %.1f ", cmd, 120*x.Time.Sub(start).Seconds()/window, 24-24*min(*v, 100)/100)
		cmd = "L"
	}
	sp.Path = strings.TrimSpace(b.String())
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
