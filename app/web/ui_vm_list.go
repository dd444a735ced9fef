package web

import (
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/views/pages"
)

// vmsPage is GET /vms: the list of VMs.
func (s *Server) vmsPage(c echo.Context) error {
	rows, err := s.vmRows(c)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMs(s.layout(c, "Virtual machines"), rows))
}

// vmList is GET /vms/list: the polled table alone.
func (s *Server) vmList(c echo.Context) error {
	rows, err := s.vmRows(c)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMList(rows))
}

// vmRows is every VM as a list row, with its sparklines when metrics are on.
func (s *Server) vmRows(c echo.Context) ([]pages.VMRow, error) {
	vms, err := s.VMs.List(c.Request().Context())
	if err != nil {
		return nil, err
	}
	rows := make([]pages.VMRow, len(vms))
	now := time.Now()
	for i, v := range vms {
		rows[i] = pages.VMRow{ID: v.ID, Name: v.Name, State: string(v.State), VCPUs: v.VCPUs,
			MemoryMiB: v.MemoryMiB, GuestIP: guestIPView(v, now)}
		if s.Metrics != nil && v.State == app.VMRunning {
			hist := s.Metrics.History(v.ID, now.Add(-15*time.Minute))
			stale := 3 * s.Metrics.Interval()
			rows[i].CPU = sparkOf(hist, now, stale, func(x metrics.Sample) *float64 { return x.CPUPercent })
			rows[i].Mem = sparkOf(hist, now, stale, func(x metrics.Sample) *float64 { return x.MemPercent })
		}
	}
	return rows, nil
}
