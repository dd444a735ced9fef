package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

// snapshotsView is the VM's snapshots panel as the page shows it.
func (s *Server) snapshotsView(c echo.Context, rec *app.VM) (pages.SnapshotsView, error) {
	list, err := s.VMs.Snapshots(c.Request().Context(), rec.ID)
	if err != nil {
		return pages.SnapshotsView{}, err
	}
	now := time.Now()
	v := pages.SnapshotsView{VMID: rec.ID, VMName: rec.Name, Live: rec.State.Live(), CanRun: s.VMs.CanRun(), CSRF: csrfToken(c),
		Suggest: "snap-" + now.UTC().Format("20060102-150405")}
	for _, sn := range list {
		r := pages.SnapshotRow{Name: sn.Name, State: sn.State, Kind: sn.Kind, Created: sn.CreatedAt.Format(time.RFC3339),
			Age: ago(now, sn.CreatedAt), Error: sn.Error, Size: "—", Paused: "—"}
		if sn.State == app.SnapshotReady {
			r.Size, r.Paused = app.Bytes(sn.SizeBytes), fmt.Sprintf("%d ms", sn.TookMillis)
		}
		v.Taking = v.Taking || sn.State == app.SnapshotTaking
		v.Rows = append(v.Rows, r)
	}
	return v, nil
}

// vmSnapshots is GET /vms/{id}/snapshots: the panel.
func (s *Server) vmSnapshots(c echo.Context) error {
	rec, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	v, err := s.snapshotsView(c, rec)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMSnapshots(v))
}

// uiSnapshotOp serves the panel's forms (take, restore, delete): the panel comes back with
// the refusal in it, if any, and the page's other panels reload (vm-changed).
func (s *Server) uiSnapshotOp(op func(c echo.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		opErr := op(c)
		rec, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
		if err != nil {
			return err
		}
		status, refused := http.StatusOK, ""
		if opErr != nil {
			var escalate error
			if status, refused, escalate = refusal(opErr); escalate != nil {
				return escalate
			}
		}
		if !isHTMX(c) && refused == "" {
			return c.Redirect(http.StatusSeeOther, "/vms/"+rec.ID)
		}
		v, err := s.snapshotsView(c, rec)
		if err != nil {
			return err
		}
		v.Error = refused
		if refused != "" {
			c.Response().Header().Set("HX-Reswap", "outerHTML")
		} else {
			c.Response().Header().Set("HX-Trigger", "vm-changed")
		}
		return render(c, status, pages.VMSnapshots(v))
	}
}

// The snapshot forms of another node's VM are carried out by its node (its files are
// there), through its API.

func (s *Server) uiTakeSnapshot(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	if v := s.elsewhere(c); v != nil {
		return s.askOwner(c, v, http.MethodPost, "/vms/"+v.ID+"/snapshots", map[string]string{"name": name})
	}
	_, err := s.VMs.Snapshot(c.Request().Context(), c.Param("id"), name, false, actor(c))
	return err
}

func (s *Server) uiRestoreSnapshot(c echo.Context) error {
	if v := s.elsewhere(c); v != nil {
		return s.askOwner(c, v, http.MethodPost, "/vms/"+v.ID+"/snapshots/"+url.PathEscape(c.Param("name"))+"/restore", nil)
	}
	_, err := s.VMs.Restore(c.Request().Context(), c.Param("id"), c.Param("name"), actor(c))
	return err
}

func (s *Server) uiDeleteSnapshot(c echo.Context) error {
	if v := s.elsewhere(c); v != nil {
		return s.askOwner(c, v, http.MethodDelete, "/vms/"+v.ID+"/snapshots/"+url.PathEscape(c.Param("name")), nil)
	}
	return s.VMs.DeleteSnapshot(c.Request().Context(), c.Param("id"), c.Param("name"), actor(c))
}
