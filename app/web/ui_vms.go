package web

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/app/vm"
	"hearth/views/pages"
)

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

func (s *Server) vmsPage(c echo.Context) error {
	rows, err := s.vmRows(c)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMs(s.layout(c, "Virtual machines"), rows))
}

func (s *Server) vmList(c echo.Context) error {
	rows, err := s.vmRows(c)
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMList(rows))
}

func (s *Server) newVMPage(c echo.Context) error {
	f := pages.VMForm{Title: "New virtual machine", Action: "/vms", Submit: "Create VM", Cancel: "/vms",
		VCPUs: "1", MemoryMiB: "256", BootArgs: "console=ttyS0 reboot=k panic=1", CSRF: csrfToken(c), New: true}
	s.provisionChoice(&f, true)
	return renderOK(c, s.vmFormPage(c, "New VM", f))
}

// formSpec reads the VM form. Numbers that do not parse are reported as field errors with
// the rest of the validation, so the form shows everything wrong at once.
func formSpec(c echo.Context) (pages.VMForm, app.VMUpdate, map[string]string) {
	f := pages.VMForm{Name: strings.TrimSpace(c.FormValue("name")), VCPUs: strings.TrimSpace(c.FormValue("vcpus")),
		MemoryMiB: strings.TrimSpace(c.FormValue("memory_mib")), Kernel: strings.TrimSpace(c.FormValue("kernel")),
		Initrd: strings.TrimSpace(c.FormValue("initrd")), Rootfs: strings.TrimSpace(c.FormValue("rootfs")),
		BootArgs: strings.TrimSpace(c.FormValue("boot_args")), CSRF: csrfToken(c)}
	u := app.VMUpdate{Name: &f.Name, Kernel: &f.Kernel, Initrd: &f.Initrd, Rootfs: &f.Rootfs, BootArgs: &f.BootArgs}
	errs := map[string]string{}
	num := func(field, v string, dst **int) {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs[field] = "must be a positive whole number"
			return
		}
		*dst = &n
	}
	num("vcpus", f.VCPUs, &u.VCPUs)
	num("memory_mib", f.MemoryMiB, &u.MemoryMiB)
	return f, u, errs
}

// formErrors merges the form's own errors with the use case's, for re-rendering.
func formErrors(f *pages.VMForm, parse map[string]string, err error) {
	f.Errors = map[string]string{}
	for k, v := range app.ErrorFields(err) {
		f.Errors[k] = v
	}
	for k, v := range parse {
		f.Errors[k] = v
	}
	if len(f.Errors) == 0 && err != nil {
		f.Error = app.ErrorMessage(err)
	}
}

func (s *Server) createVM(c echo.Context) error {
	f, u, parseErrs := formSpec(c)
	f.Title, f.Action, f.Submit, f.Cancel, f.New = "New virtual machine", "/vms", "Create VM", "/vms", true
	provision := c.FormValue("provision") == "on"
	s.provisionChoice(&f, provision)
	spec := app.VMSpec{Provision: &provision}
	u.Apply(&spec)
	var created *app.VM
	var err error
	if len(parseErrs) == 0 {
		created, _, err = s.VMs.Create(c.Request().Context(), spec, actor(c))
	} else {
		err = vm.Normalize(&spec) // to show every field's problem at once
	}
	if len(parseErrs) > 0 || err != nil {
		status, _, _ := classify(err)
		if err == nil {
			status = 400
		} else if status >= 500 {
			return err
		}
		formErrors(&f, parseErrs, err)
		return render(c, status, s.vmFormPage(c, "New VM", f))
	}
	return redirect(c, "/vms/"+created.ID)
}

// provisionChoice sets the form's provisioning checkbox, and explains when it is not
// available on this manager.
func (s *Server) provisionChoice(f *pages.VMForm, want bool) {
	if err := s.VMs.CanProvision(); err != nil {
		f.ProvisionUnavailable = app.ErrorMessage(err)
		return
	}
	f.Provision = want
}

func (s *Server) editVMPage(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	f := pages.VMForm{Title: "Edit " + v.Name, Action: "/vms/" + v.ID, Submit: "Save changes", Cancel: "/vms/" + v.ID,
		Name: v.Name, VCPUs: strconv.Itoa(v.VCPUs), MemoryMiB: strconv.Itoa(v.MemoryMiB), Kernel: v.Kernel,
		Initrd: v.Initrd, Rootfs: v.Rootfs, BootArgs: v.BootArgs, CSRF: csrfToken(c)}
	return renderOK(c, s.vmFormPage(c, "Edit "+v.Name, f))
}

func (s *Server) updateVM(c echo.Context) error {
	id := c.Param("id")
	f, u, parseErrs := formSpec(c)
	f.Title, f.Action, f.Submit, f.Cancel = "Edit "+f.Name, "/vms/"+id, "Save changes", "/vms/"+id
	var err error
	if len(parseErrs) == 0 {
		_, err = s.VMs.Update(c.Request().Context(), id, u, actor(c))
	} else {
		var spec app.VMSpec
		u.Apply(&spec)
		err = vm.Normalize(&spec)
	}
	if len(parseErrs) > 0 || err != nil {
		status, code, _ := classify(err)
		if err == nil {
			status = 400
		} else if status >= 500 || code == app.ENOTFOUND {
			return err
		}
		formErrors(&f, parseErrs, err)
		return render(c, status, s.vmFormPage(c, f.Title, f))
	}
	return redirect(c, "/vms/"+id)
}

func (s *Server) deleteVM(c echo.Context) error {
	if err := s.VMs.Delete(c.Request().Context(), c.Param("id"), actor(c)); err != nil {
		return err
	}
	return redirect(c, "/vms")
}

func (s *Server) vmPage(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return s.renderVMPageWith(c, v, guestIPView(v, time.Now()), 200)
}

// renderVMPageWith renders the VM page with the given guest-IP panel state.
func (s *Server) renderVMPageWith(c echo.Context, rec *app.VM, g pages.GuestIPView, status int) error {
	audit, err := s.auditRows(c, rec.ID)
	if err != nil {
		return err
	}
	v := pages.VMView{ID: rec.ID, Name: rec.Name, State: string(rec.State), VCPUs: rec.VCPUs, MemoryMiB: rec.MemoryMiB,
		Kernel: rec.Kernel, Initrd: rec.Initrd, Rootfs: rec.Rootfs, BootArgs: rec.BootArgs, MAC: rec.MAC,
		Created: rec.CreatedAt.Format("2006-01-02 15:04 MST"), GuestIP: g, CSRF: csrfToken(c), Busy: rec.Busy(),
		Provisioned: rec.Provisioned, HostKey: rec.HostKey, HostKeySource: rec.HostKeySource, Address: rec.Address}
	v.GuestIP.CSRF = v.CSRF
	v.Audit = audit
	v.Status = s.statusView(c, rec)
	v.Metrics = s.metricsView(c.Request().Context(), rec, c.QueryParam("window"))
	if s.Installs != nil {
		j, err := s.Installs.Latest(c.Request().Context(), rec.ID)
		if err != nil && app.ErrorCode(err) != app.ENOTFOUND {
			return err
		}
		iv := installView(rec.ID, j, v.CSRF)
		v.Install = &iv
	}
	return render(c, status, pages.VM(s.layout(c, rec.Name), v))
}

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

// vmFormPage is the VM form as a page, telling where images may come from.
func (s *Server) vmFormPage(c echo.Context, title string, f pages.VMForm) templ.Component {
	f.ImageDirs = strings.Join(s.VMs.ImageDirs(), ", ")
	return pages.VMFormPage(s.layout(c, title), f)
}
