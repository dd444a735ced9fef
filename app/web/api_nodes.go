package web

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
)

type nodeJSON struct {
	Name         string    `json:"name"`
	State        string    `json:"state"` // up, down
	URL          string    `json:"url"`
	CPUs         int       `json:"cpus"`
	MemoryMiB    int       `json:"memory_mib"`
	Network      string    `json:"network"`
	Version      string    `json:"version"`
	StartedAt    time.Time `json:"started_at"`
	HeartbeatAt  time.Time `json:"heartbeat_at"`
	HeartbeatAge float64   `json:"heartbeat_age_seconds"`
	Interval     float64   `json:"heartbeat_interval_seconds"`
	VMs          int       `json:"vms"`
	Running      int       `json:"running"`
	Self         bool      `json:"self"` // the node that answered
}

// apiNodes is GET /v1/nodes: every manager sharing the database, with its state.
func (s *Server) apiNodes(c echo.Context) error {
	if s.Nodes == nil {
		return app.Errorf(app.EUNAVAILABLE, "this manager keeps no node records")
	}
	list, err := s.Nodes.List(c.Request().Context())
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]nodeJSON, len(list))
	for i, n := range list {
		out[i] = nodeJSON{Name: n.Name, State: n.State, URL: n.URL, CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, Network: n.Network,
			Version: n.Version, StartedAt: n.StartedAt, HeartbeatAt: n.HeartbeatAt, HeartbeatAge: now.Sub(n.HeartbeatAt).Seconds(),
			Interval: n.Interval.Seconds(), VMs: n.VMs, Running: n.Running, Self: n.Self}
	}
	return c.JSON(http.StatusOK, map[string]any{"nodes": out})
}

// nodeStates maps node names to up/down for this request (empty without nodes, or when
// they cannot be read: the VMs are then shown as recorded).
func (s *Server) nodeStates(ctx context.Context) map[string]string {
	if s.Nodes == nil {
		return nil
	}
	states, err := s.Nodes.States(ctx)
	if err != nil {
		s.Logger.Warn("read node states", "error", err)
		return nil
	}
	return states
}

// remote reports whether another node runs (and polls) v.
func (s *Server) remote(v *app.VM) bool {
	return s.Nodes != nil && v.Node != "" && v.Node != s.Nodes.Name()
}

// shownState is what the pages say a VM is: its recorded state, or "node down" while its
// node misses its heartbeats (the record is then the last word from it, not the truth).
func shownState(v *app.VM, states map[string]string) string {
	if states[v.Node] == app.NodeDown {
		return "node down"
	}
	return string(v.State)
}
