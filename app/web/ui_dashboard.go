package web

import (
	"runtime"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/procfs"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/views/pages"
)

// dashboard totals the host: VMs by state, agents by badge, what running VMs were given
// against what the host has, and the sum of their I/O rates.
func (s *Server) dashboard(c echo.Context) (pages.Dashboard, error) {
	vms, err := s.VMs.List(c.Request().Context())
	if err != nil {
		return pages.Dashboard{}, err
	}
	d := pages.Dashboard{HostCPUs: runtime.NumCPU()}
	if s.Nodes != nil && !s.Nodes.OneHost() { // this host's VMs only: the others use other hosts' CPUs and memory
		d.Node = s.Nodes.Name()
		mine := vms[:0]
		for _, v := range vms {
			if s.remote(v) {
				d.Elsewhere++
			} else {
				mine = append(mine, v)
			}
		}
		vms = mine
	}
	d.VMs = len(vms)
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if mi, err := fs.Meminfo(); err == nil && mi.MemTotalBytes != nil {
			d.HostMemoryMiB = int(*mi.MemTotalBytes >> 20)
		}
	}
	now := time.Now()
	var cpuSum float64
	var cpuN int
	var rx, tx, rd, wr float64
	for _, v := range vms {
		switch v.State {
		case app.VMRunning:
			d.Running++
			d.VCPUs += v.VCPUs
			d.MemoryMiB += v.MemoryMiB
		case app.VMPaused: // not running, but its memory and vCPUs stay allocated
			d.VCPUs += v.VCPUs
			d.MemoryMiB += v.MemoryMiB
		case app.VMFailed:
			d.Failed++
		}
		if s.Metrics == nil || v.State != app.VMRunning {
			continue
		}
		switch s.Metrics.StatusOf(v, now).State {
		case metrics.StatusLive:
			d.Live++
		case metrics.StatusHost:
			d.Fallback++
		case metrics.StatusStale:
			d.Stale++
			continue // not current: left out of the sums
		}
		if x, ok := s.Metrics.Latest(v); ok {
			if x.CPUPercent != nil && x.Source == metrics.FromAgent {
				cpuSum += *x.CPUPercent
				cpuN++
			}
			for _, p := range []struct {
				dst *float64
				v   *float64
			}{{&rx, x.NetRxBps}, {&tx, x.NetTxBps}, {&rd, x.DiskReadBps}, {&wr, x.DiskWriteBps}} {
				if p.v != nil {
					*p.dst += *p.v
				}
			}
		}
	}
	d.GuestCPUAvg = "—"
	if cpuN > 0 {
		avg := cpuSum / float64(cpuN)
		d.GuestCPUAvg = pct(&avg)
	}
	d.NetIn, d.NetOut, d.DiskRead, d.DiskWrite = bps(&rx), bps(&tx), bps(&rd), bps(&wr)
	return d, nil
}

func (s *Server) dashboardPage(c echo.Context) error {
	d, err := s.dashboard(c)
	if err != nil {
		return err
	}
	p := s.layout(c, "Dashboard")
	p.Nav = "dashboard"
	return renderOK(c, pages.DashboardPage(p, d))
}

func (s *Server) dashboardPanel(c echo.Context) error {
	d, err := s.dashboard(c)
	if err != nil {
		return err
	}
	return renderOK(c, pages.DashboardPanel(d))
}
