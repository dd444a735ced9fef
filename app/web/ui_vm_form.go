package web

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

// formSpec reads the VM form. Numbers that do not parse are reported as field errors with
// the rest of the validation, so the form shows everything wrong at once.
func formSpec(c echo.Context) (pages.VMForm, app.VMUpdate, map[string]string) {
	f := pages.VMForm{Name: strings.TrimSpace(c.FormValue("name")), Image: c.FormValue("image"), VCPUs: strings.TrimSpace(c.FormValue("vcpus")),
		MemoryMiB: strings.TrimSpace(c.FormValue("memory_mib")), Kernel: strings.TrimSpace(c.FormValue("kernel")),
		Initrd: strings.TrimSpace(c.FormValue("initrd")), Rootfs: strings.TrimSpace(c.FormValue("rootfs")),
		BootArgs: strings.TrimSpace(c.FormValue("boot_args")), CSRF: csrfToken(c)}
	u := app.VMUpdate{Name: &f.Name, Image: &f.Image, Kernel: &f.Kernel, Initrd: &f.Initrd, Rootfs: &f.Rootfs, BootArgs: &f.BootArgs}
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

// provisionChoice sets the form's provisioning checkbox, and explains when it is not
// available on this manager.
func (s *Server) provisionChoice(f *pages.VMForm, want bool) {
	if err := s.VMs.CanProvision(); err != nil {
		f.ProvisionUnavailable = app.ErrorMessage(err)
		return
	}
	f.Provision = want
}

// vmFormPage is the VM form as a page, telling where images may come from.
func (s *Server) vmFormPage(c echo.Context, title string, f pages.VMForm) templ.Component {
	f.ImageDirs = strings.Join(s.VMs.ImageDirs(), ", ")
	f.DerivedBootArgs, _ = s.VMs.BootArgsFor(c.Request().Context(), &app.VM{Rootfs: "rootfs"})
	if s.Images != nil {
		if list, err := s.Images.List(c.Request().Context()); err == nil { // newest first
			// One option per name; with several nodes, the label says which have it (a VM
			// from it is placed on one of them).
			on := map[string][]string{}
			var names []string
			byName := map[string]*app.Image{}
			for _, im := range list {
				if im.State != app.ImageReady {
					continue
				}
				if _, seen := byName[im.Name]; !seen {
					byName[im.Name] = im
					names = append(names, im.Name)
				}
				on[im.Name] = append(on[im.Name], im.Node)
			}
			several := s.Nodes != nil && !s.Nodes.OneHost()
			for _, name := range names {
				im := byName[name]
				label := im.Name + " (" + orNone(im.Init) + cloudNote(im.CloudInit)
				if several {
					slices.Sort(on[name])
					label += "; on " + strings.Join(on[name], ", ")
				}
				f.Images = append(f.Images, pages.ImageOption{Name: im.Name, Label: label + ")"})
			}
		}
	}
	if s.Nodes != nil && f.New {
		if list, err := s.Nodes.List(c.Request().Context()); err == nil && len(list) > 1 {
			for _, n := range list {
				f.Nodes = append(f.Nodes, pages.ImageOption{Name: n.Name, Label: fmt.Sprintf("%s (%s, %s free)", n.Name, n.State, app.Bytes(int64(n.FreeMiB())<<20))})
			}
		}
	}
	return pages.VMFormPage(s.layout(c, title), f)
}

func orNone(s string) string {
	if s == "" {
		return "no init"
	}
	return s
}

func cloudNote(on bool) string {
	if on {
		return ", cloud-init"
	}
	return ", no cloud-init"
}
