package web

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/guest/api"
	"hearth/views/components"
	"hearth/views/pages"
)

var windows = map[string]time.Duration{"15m": 15 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func (s *Server) metricsView(ctx context.Context, rec *app.VM, window string) *pages.MetricsView {
	if s.Metrics == nil {
		return nil
	}
	if _, ok := windows[window]; !ok {
		window = "15m"
	}
	now := time.Now()
	st := s.Metrics.StatusOf(rec, now)
	// Another node polls this VM: what its samples in the database say.
	remote := s.remote(rec)
	var remoteSample metrics.Sample
	var haveRemote bool
	if remote {
		st, remoteSample, haveRemote = s.Metrics.Remote(ctx, rec, now)
	}
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
	case metrics.StatusPaused:
		v.Label = "paused · agent not polled · host side " + age
	default:
		v.Label = "live · " + st.Source + " · " + age
	}
	if sample, ok := s.Metrics.Latest(rec); remote && haveRemote {
		v.Stats = stats(remoteSample)
	} else if ok && !remote && st.State != metrics.StatusStopped {
		v.Stats = stats(sample)
	}
	if rec.State.Live() && !remote {
		fss, at := s.Metrics.Filesystems(rec)
		v.Filesystems = fsBars(fss)
		if len(v.Filesystems) > 0 && st.State != metrics.StatusLive {
			v.FSNote = fmt.Sprintf("as the agent reported them %.0f s ago", now.Sub(at).Seconds())
		}
	}
	if rec.State.Live() || st.State == metrics.StatusStale {
		w := windows[window]
		gap := 3 * s.Metrics.Interval()
		var hist []metrics.Sample
		switch {
		case w <= s.Metrics.Kept() && !remote: // memory holds it
			hist = s.Metrics.History(rec.ID, now.Add(-w))
		case window == "7d": // the week: the stored minute averages
			hist, gap = s.readHistory(ctx, rec.ID, now.Add(-w), s.Metrics.Averages), 3*time.Minute
		default: // longer than memory keeps: the stored raw samples
			hist = s.readHistory(ctx, rec.ID, now.Add(-w), s.Metrics.Persisted)
		}
		g := grid{hist: hist, start: now.Add(-w), window: w, maxGap: gap}
		agentOnly := func(f func(metrics.Sample) *float64) func(metrics.Sample) *float64 {
			return func(x metrics.Sample) *float64 {
				if x.Source != metrics.FromAgent {
					return nil
				}
				return f(x)
			}
		}
		hostOnly := func(f func(metrics.Sample) *float64) func(metrics.Sample) *float64 {
			return func(x metrics.Sample) *float64 {
				if x.Source != metrics.FromHost {
					return nil
				}
				return f(x)
			}
		}
		cpu := func(x metrics.Sample) *float64 { return x.CPUPercent }
		v.Charts = []pages.Chart{
			g.chart("CPU %", 100,
				line{"guest (agent)", "stroke-orange-600", false, agentOnly(cpu)},
				line{"hypervisor process (host fallback)", "stroke-amber-500", true, hostOnly(cpu)}),
			g.chart("Memory % (guest, agent)", 100,
				line{"guest memory", "stroke-orange-600", false, func(x metrics.Sample) *float64 { return x.MemPercent }}),
			g.chart("Network (hypervisor)", 0,
				line{"in", "stroke-sky-600", false, func(x metrics.Sample) *float64 { return x.NetRxBps }},
				line{"out", "stroke-violet-600", false, func(x metrics.Sample) *float64 { return x.NetTxBps }}),
			g.chart("Disk", 0,
				line{"device read", "stroke-emerald-600", false, func(x metrics.Sample) *float64 { return x.DiskReadBps }},
				line{"device write", "stroke-orange-600", false, func(x metrics.Sample) *float64 { return x.DiskWriteBps }},
				line{"written by programs (agent)", "stroke-stone-500", true, func(x metrics.Sample) *float64 { return x.ProgWriteBps }}),
		}
		v.Charts[1].Note = "host-fallback stretches have no guest memory (host RSS is not drawn as it)"
	}
	return v
}

// readHistory reads a stored window; a failed read is logged and draws as "no data".
func (s *Server) readHistory(ctx context.Context, id string, since time.Time,
	read func(context.Context, string, time.Time) ([]metrics.Sample, error)) []metrics.Sample {
	h, err := read(ctx, id, since)
	if err != nil {
		s.Logger.Warn("metrics: read stored samples", "vm", id, "error", err)
	}
	return h
}

// line is one series to draw: its legend, colour, and the value it takes of a sample
// (nil where that sample has none, which breaks the line).
type line struct {
	name, class string
	dashed      bool
	val         func(metrics.Sample) *float64
}

// grid is a chart window over a VM's samples.
type grid struct {
	hist   []metrics.Sample
	start  time.Time
	window time.Duration
	maxGap time.Duration // a step longer than this is a gap: no samples (stopped, manager down)
}

func (g grid) x(t time.Time) float64 {
	return min(600, max(0, 600*t.Sub(g.start).Seconds()/g.window.Seconds()))
}

// chart draws lines against fixed (0: scaled to the largest value, as a rate in bytes/s).
func (g grid) chart(title string, fixed float64, lines ...line) pages.Chart {
	c := pages.Chart{Title: title, Empty: "no data in this window"}
	top := fixed
	if top == 0 {
		top = 1024 // 1 KiB/s at least, so that idle noise stays flat
		for _, x := range g.hist {
			for _, l := range lines {
				if v := l.val(x); v != nil && *v > top {
					top = *v
				}
			}
		}
		top = niceCeil(top)
		c.Max = bps(&top)
	} else {
		c.Max = fmt.Sprintf("%.0f %%", top)
	}
	for _, l := range lines {
		c.Series = append(c.Series, pages.Series{Name: l.name, Class: l.class, Dashed: l.dashed,
			Line: components.Line{Points: points(g.hist, l.val), Start: g.start, Window: g.window, Max: top, MaxGap: g.maxGap}})
	}
	c.Gaps, c.Sources = g.spans()
	return c
}

// spans splits the window into stretches of one source and gaps with no samples.
func (g grid) spans() (gaps, sources []pages.Span) {
	add := func(to *[]pages.Span, from, until time.Time, kind string) {
		x0, x1 := g.x(from), g.x(until)
		if x1 <= x0 {
			return
		}
		if n := len(*to); n > 0 && (*to)[n-1].Kind == kind && (*to)[n-1].X+(*to)[n-1].W >= x0-0.01 {
			(*to)[n-1].W = x1 - (*to)[n-1].X
			return
		}
		*to = append(*to, pages.Span{X: x0, W: x1 - x0, Kind: kind})
	}
	prev := g.start
	have := false
	for _, s := range g.hist {
		if have && s.Time.Sub(prev) <= g.maxGap {
			add(&sources, prev, s.Time, s.Source)
		} else if s.Time.Sub(prev) > g.maxGap {
			add(&gaps, prev, s.Time, "gap")
		}
		prev, have = s.Time, true
	}
	if end := g.start.Add(g.window); end.Sub(prev) > g.maxGap {
		add(&gaps, prev, end, "gap")
	}
	return gaps, sources
}

// niceCeil rounds v up to a readable top for a rate axis: 1, 2, 5, 10, 20, 50, 100, 200
// or 500 of the binary unit below it (B, KiB, MiB, …).
func niceCeil(v float64) float64 {
	unit := 1.0
	for v > unit*1024 {
		unit *= 1024
	}
	for _, m := range []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1024} {
		if v <= m*unit {
			return m * unit
		}
	}
	return 1024 * unit
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

// measuring is what a figure says while the source has no value yet: the agent's CPU
// share and the host's both need two readings.
const measuring = "measuring…"

func stats(x metrics.Sample) []pages.Stat {
	mem := pages.Stat{Label: "Memory", Value: pct(x.MemPercent)}
	if x.Source == metrics.FromHost {
		mem = pages.Stat{Label: "Host RSS", Value: fmt.Sprintf("%.0f MiB", float64(x.HostRSSBytes)/(1<<20)), Hint: "hypervisor process, not guest memory"}
	}
	cpu := pages.Stat{Label: "CPU", Value: pct(x.CPUPercent)}
	if x.CPUPercent == nil {
		cpu.Value = measuring
	}
	if x.Source == metrics.FromHost {
		cpu.Hint = "hypervisor process"
	}
	read := pages.Stat{Label: "Disk read", Value: bps(x.DiskReadBps) + " device",
		Tip: "device: what the hypervisor read from the VM's disk. paged in: what the guest read from its disks (/proc/vmstat pgpgin). Reads the guest serves from its page cache reach neither and are counted by no kernel counter."}
	write := pages.Stat{Label: "Disk write", Value: bps(x.DiskWriteBps) + " device",
		Tip: "device: what the hypervisor wrote to the VM's disk. by programs: what the guest's programs wrote into its page cache (/proc/vmstat nr_dirtied × page size); the kernel writes it to the disk later, and a file written and deleted within seconds never reaches it. Files on tmpfs are memory and count in neither."}
	if x.Source == metrics.FromAgent {
		read.Second, write.Second = measuring+" paged in", measuring+" by programs"
		if x.PageInBps != nil {
			read.Second = bps(x.PageInBps) + " paged in"
		}
		if x.ProgWriteBps != nil {
			write.Second = bps(x.ProgWriteBps) + " by programs"
		}
	}
	return []pages.Stat{cpu, mem, {Label: "Net in", Value: bps(x.NetRxBps)}, {Label: "Net out", Value: bps(x.NetTxBps)}, read, write}
}

// fsBars are the guest's filesystems as bars, by mountpoint; "used %" is df's: used over
// used plus what unprivileged users may still write.
func fsBars(fss []api.Filesystem) []pages.FSBar {
	out := make([]pages.FSBar, 0, len(fss))
	for _, f := range fss {
		if f.SizeBytes == 0 || f.UsedBytes+f.AvailBytes == 0 {
			continue
		}
		p := 100 * float64(f.UsedBytes) / float64(f.UsedBytes+f.AvailBytes)
		out = append(out, pages.FSBar{Mount: f.Mountpoint, FSType: f.FSType, Device: f.Device, Used: bytesOf(f.UsedBytes),
			Size: bytesOf(f.SizeBytes), Percent: p, Warn: p >= 90})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mount < out[j].Mount })
	return out
}

func bytesOf(n uint64) string { return app.Bytes(int64(n)) }

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
