package web

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/image"
	"hearth/app/vm"
	"hearth/views/pages"
)

func (s *Server) imageRow(im *app.Image, now time.Time) pages.ImageRow {
	r := pages.ImageRow{Name: im.Name, State: string(im.State), Source: im.Source, Reference: im.Reference, Init: im.Init,
		CloudInit: im.CloudInit, Size: imageSize(im), Created: ago(now, im.CreatedAt), CreatedAt: im.CreatedAt.Format(time.RFC3339),
		UsedBy: im.UsedBy, Href: "/images/" + im.Name, Own: true}
	if s.Nodes != nil && !s.Nodes.OneHost() {
		r.Node = im.Node
		if im.Node != s.Nodes.Name() {
			r.Own = false
			r.Href += "?node=" + url.QueryEscape(im.Node)
		}
	}
	return r
}

func imageSize(im *app.Image) string {
	if im.Size() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(im.Size())/(1<<20))
}

func imageProgress(im *app.Image) pages.ImageProgress {
	p := pages.ImageProgress{Name: im.Name, State: string(im.State), Error: im.Error, Log: im.Log, Href: "/images/" + im.Name}
	for _, st := range im.Steps {
		p.Steps = append(p.Steps, pages.InstallStep{Name: st.Name, State: st.State, Detail: st.Detail})
	}
	return p
}

// imagesPage is GET /images: the list and the build and import forms.
func (s *Server) imagesPage(c echo.Context) error {
	v := pages.ImagesView{Init: "systemd"}
	if d := c.QueryParam("deleted"); imageNameRE.MatchString(d) {
		v.Deleted = d
	}
	return s.renderImages(c, http.StatusOK, v)
}

var imageNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

func (s *Server) renderImages(c echo.Context, status int, v pages.ImagesView) error {
	if err := s.images(); err != nil {
		return err
	}
	list, err := s.Images.List(c.Request().Context())
	if err != nil {
		return err
	}
	now := time.Now()
	for _, im := range list {
		v.Rows = append(v.Rows, s.imageRow(im, now))
		if im.State == app.ImageReady && im.Kernel != "" && (s.Nodes == nil || im.Node == s.Nodes.Name()) {
			v.Kernels = append(v.Kernels, im.Name)
		}
	}
	v.CSRF = csrfToken(c)
	p := s.layout(c, "Images")
	p.Nav = "images"
	return render(c, status, pages.Images(p, v))
}

// createImage is POST /images: a build (kind=build) or an import (kind=import); then the
// image's page, which follows its making. A refusal re-renders the form that was sent.
func (s *Server) createImage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	name := strings.TrimSpace(c.FormValue("name"))
	v := pages.ImagesView{Init: "systemd"}
	var im *app.Image
	var err error
	switch c.FormValue("kind") {
	case "build":
		v.BuildName, v.Release, v.Init, v.Size = name, strings.TrimSpace(c.FormValue("release")), c.FormValue("init"), strings.TrimSpace(c.FormValue("size"))
		im, err = s.Images.StartBuild(ctx, name, image.BuildSpec{Release: v.Release, Init: v.Init, Size: v.Size}, actor(c))
	case "import":
		v.ImportName, v.Kernel, v.Initrd, v.Rootfs = name, strings.TrimSpace(c.FormValue("kernel")), strings.TrimSpace(c.FormValue("initrd")), strings.TrimSpace(c.FormValue("rootfs"))
		im, err = s.Images.StartImport(ctx, name, image.ImportFiles{Kernel: v.Kernel, Initrd: v.Initrd, Rootfs: v.Rootfs},
			vm.ImageDirs(s.VMs.ImageDirs()).Resolve, actor(c))
	default:
		return app.Errorf(app.EINVALID, "kind must be build or import")
	}
	if err != nil {
		status, msg, escalate := refusal(err)
		if escalate != nil {
			return escalate
		}
		fields := app.ErrorFields(err)
		if c.FormValue("kind") == "build" {
			v.BuildErrors = fields
			if len(fields) == 0 {
				v.BuildError = msg
			}
		} else {
			v.ImportErrors = fields
			if len(fields) == 0 {
				v.ImportError = msg
			}
		}
		return s.renderImages(c, status, v)
	}
	return redirect(c, "/images/"+im.Name)
}

// imagePage is GET /images/{name}.
func (s *Server) imagePage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	im, err := s.Images.Get(c.Request().Context(), c.QueryParam("node"), c.Param("name"))
	if err != nil {
		return err
	}
	v := pages.ImageView{Row: s.imageRow(im, time.Now()), Kernel: im.Kernel, Vmlinux: im.Vmlinux, Initrd: im.Initrd,
		Rootfs: im.Rootfs, Progress: imageProgress(im), CSRF: csrfToken(c)}
	v.Progress.Href = v.Row.Href
	for _, f := range im.Files {
		v.Files = append(v.Files, pages.ImageFileRow{Name: f.Name, Size: fmt.Sprintf("%.1f MiB", float64(f.Size)/(1<<20)), SHA256: f.SHA256})
	}
	p := s.layout(c, im.Name)
	p.Nav = "images"
	return renderOK(c, pages.Image(p, v))
}

// imageProgressPanel is GET /images/{name}/progress: polled while the image is made; 286
// (stop polling) once it is ready or failed.
func (s *Server) imageProgressPanel(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	im, err := s.Images.Get(c.Request().Context(), c.QueryParam("node"), c.Param("name"))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if im.State != app.ImageBuilding {
		status = 286
	}
	p := imageProgress(im)
	p.Href = s.imageRow(im, time.Now()).Href
	return render(c, status, pages.ImageProgressPanel(p))
}

// deleteImage is POST /images/{name}/delete; refused, with the VMs named, while VMs use it.
func (s *Server) deleteImage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	name := c.Param("name")
	if err := s.Images.Delete(c.Request().Context(), c.QueryParam("node"), name, actor(c)); err != nil {
		return err
	}
	return redirect(c, "/images?deleted="+name)
}
