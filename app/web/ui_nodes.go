package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

// nodesPage is GET /nodes (and its polled table, ?part=1).
func (s *Server) nodesPage(c echo.Context) error {
	if s.Nodes == nil {
		return app.Errorf(app.ENOTFOUND, "this manager keeps no node records")
	}
	list, err := s.Nodes.List(c.Request().Context())
	if err != nil {
		return err
	}
	now := time.Now()
	rows := make([]pages.NodeRow, len(list))
	for i, n := range list {
		rows[i] = pages.NodeRow{Name: n.Name, State: n.State, URL: n.URL, Network: n.Network, Version: n.Version, CPUs: n.CPUs,
			MemoryMiB: n.MemoryMiB, VMs: n.VMs, Running: n.Running, Heartbeat: ago(now, n.HeartbeatAt),
			HeartbeatAt: n.HeartbeatAt.Format(time.RFC3339), Started: n.StartedAt.Format(time.RFC3339), Self: n.Self}
	}
	if c.QueryParam("part") != "" {
		return renderOK(c, pages.NodesPart(rows))
	}
	p := s.layout(c, "Nodes")
	p.Nav = "nodes"
	return render(c, http.StatusOK, pages.Nodes(p, rows, s.Nodes.OneHost()))
}
