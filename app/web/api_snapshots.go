package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
)

type snapshotJSON struct {
	Name       string     `json:"name"`
	State      string     `json:"state"`
	Kind       string     `json:"kind"`
	Driver     string     `json:"driver"`
	VCPUs      int        `json:"vcpus"`
	MemoryMiB  int        `json:"memory_mib"`
	SizeBytes  int64      `json:"size_bytes"`
	PausedMs   int64      `json:"paused_ms"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Href       string     `json:"href"`
}

func toSnapshotJSON(s *app.Snapshot) snapshotJSON {
	j := snapshotJSON{Name: s.Name, State: s.State, Kind: s.Kind, Driver: s.Driver, VCPUs: s.VCPUs, MemoryMiB: s.MemoryMiB,
		SizeBytes: s.SizeBytes, PausedMs: s.TookMillis, Error: s.Error, CreatedAt: s.CreatedAt,
		Href: "/v1/vms/" + s.VMID + "/snapshots/" + s.Name}
	if !s.FinishedAt.IsZero() {
		j.FinishedAt = &s.FinishedAt
	}
	return j
}

// apiTakeSnapshot is POST /v1/vms/{id}/snapshots {"name", "kind"}: 202 with the snapshot
// being taken; GET its href until its state is ready or failed.
func (s *Server) apiTakeSnapshot(c echo.Context) error {
	var body struct {
		Name string `json:"name"`
		Kind string `json:"kind"` // "full" (default) or "diff"
	}
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	if body.Kind != "" && body.Kind != "full" && body.Kind != "diff" {
		return app.Errorf(app.EINVALID, `kind must be "full" or "diff"`)
	}
	snap, err := s.VMs.Snapshot(c.Request().Context(), c.Param("id"), body.Name, body.Kind == "diff", actor(c))
	if err != nil {
		return err
	}
	j := toSnapshotJSON(snap)
	c.Response().Header().Set(echo.HeaderLocation, j.Href)
	return c.JSON(http.StatusAccepted, map[string]any{"snapshot": j, "job": map[string]string{"state": snap.State, "href": j.Href}})
}

// apiListSnapshots is GET /v1/vms/{id}/snapshots.
func (s *Server) apiListSnapshots(c echo.Context) error {
	list, err := s.VMs.Snapshots(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	out := make([]snapshotJSON, len(list))
	for i, sn := range list {
		out[i] = toSnapshotJSON(sn)
	}
	return c.JSON(http.StatusOK, map[string]any{"snapshots": out})
}

// apiGetSnapshot is GET /v1/vms/{id}/snapshots/{name}.
func (s *Server) apiGetSnapshot(c echo.Context) error {
	sn, err := s.VMs.SnapshotOf(c.Request().Context(), c.Param("id"), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSnapshotJSON(sn))
}

// apiRestoreSnapshot is POST /v1/vms/{id}/snapshots/{name}/restore: a running VM is
// stopped first; 200 with the VM once it runs from the snapshot.
func (s *Server) apiRestoreSnapshot(c echo.Context) error {
	v, err := s.VMs.Restore(c.Request().Context(), c.Param("id"), c.Param("name"), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJSON(v))
}

// apiDeleteSnapshot is DELETE /v1/vms/{id}/snapshots/{name}: 204.
func (s *Server) apiDeleteSnapshot(c echo.Context) error {
	if err := s.VMs.DeleteSnapshot(c.Request().Context(), c.Param("id"), c.Param("name"), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
