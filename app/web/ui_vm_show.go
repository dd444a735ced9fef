package web

import (
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

// vmPage is GET /vms/{id}: the VM with its panels.
func (s *Server) vmPage(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return s.renderVMPageWith(c, v, guestIPView(v, time.Now()), http.StatusOK, "")
}

// renderVMPageWith renders the whole VM page with the guest-IP panel as given and, when
// refused is set, that refusal in the status panel (a form posted without htmx).
func (s *Server) renderVMPageWith(c echo.Context, rec *app.VM, g pages.GuestIPView, status int, refused string) error {
	audit, err := s.auditRows(c, rec.ID)
	if err != nil {
		return err
	}
	v := pages.VMView{ID: rec.ID, Name: rec.Name, State: string(rec.State), VCPUs: rec.VCPUs, MemoryMiB: rec.MemoryMiB,
		Kernel: rec.Kernel, Initrd: rec.Initrd, Rootfs: rec.Rootfs, BootArgs: rec.BootArgs, MAC: rec.MAC,
		Created: rec.CreatedAt.Format("2006-01-02 15:04 MST"), GuestIP: g, CSRF: csrfToken(c),
		Provisioned: rec.Provisioned, HostKey: rec.HostKey, HostKeySource: rec.HostKeySource, Address: rec.Address}
	v.GuestIP.CSRF = v.CSRF
	v.Audit = audit
	v.BootArgs, v.BootArgsDerived = s.VMs.BootArgsFor(c.Request().Context(), rec)
	v.Image = rec.Image
	if s.Nodes != nil && !s.Nodes.OneHost() {
		v.Node = rec.Node
	}
	v.NetworkNote = s.NetworkNote
	v.ConsoleIdle = humanDuration(s.ConsoleIdle)
	v.Status = s.statusView(c, rec)
	v.Status.Error = refused
	v.Metrics = s.metricsView(c.Request().Context(), rec, c.QueryParam("window"))
	if v.Snapshots, err = s.snapshotsView(c, rec); err != nil {
		return err
	}
	if s.Installs != nil {
		j, err := s.Installs.Latest(c.Request().Context(), rec.ID)
		if err != nil && app.ErrorCode(err) != app.ENOTFOUND {
			return err
		}
		iv := installView(rec.ID, j, v.CSRF)
		v.Install = &iv
	}
	p := s.layout(c, rec.Name)
	p.Scripts, p.Styles = []string{"js/xterm.js", "js/addon-fit.js", "js/console.js"}, []string{"css/xterm.css"}
	terminalCSP(c)
	return render(c, status, pages.VM(p, v))
}

// vmActivity is GET /vms/{id}/activity: the audit list, reloaded on changes and polled.
func (s *Server) vmActivity(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	rows, err := s.auditRows(c, v.ID)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMActivity(v.ID, rows))
}

// auditRows is the VM's newest audit entries as view rows.
func (s *Server) auditRows(c echo.Context, vmID string) ([]pages.AuditRow, error) {
	log, err := s.VMs.AuditLog(c.Request().Context(), vmID, 50)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rows := make([]pages.AuditRow, len(log))
	for i, e := range log {
		rows[i] = pages.AuditRow{At: e.At.Format(time.RFC3339), Age: ago(now, e.At),
			Actor: e.Actor, Action: e.Action, Addr: e.Addr, Detail: e.Detail}
	}
	return rows, nil
}

func guestIPView(v *app.VM, now time.Time) pages.GuestIPView {
	g := pages.GuestIPView{VMID: v.ID, IP: v.GuestIP, Source: string(v.GuestIPSource)}
	if v.GuestIPSource == app.SourceManual && v.RegisteredIP != "" {
		g.Registered = fmt.Sprintf("%s (%s)", v.RegisteredIP, v.RegisteredIPSource)
	}
	if v.GuestIP != "" {
		g.Age = ago(now, v.GuestIPUpdatedAt)
		g.UpdatedAt = v.GuestIPUpdatedAt.Format(time.RFC3339)
	}
	return g
}

// ago says how long before now t was, the way people say it.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// humanDuration says 30 min, 2 h or 45s.
func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}
