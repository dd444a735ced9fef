package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/image"
	"hearth/app/vm"
)

type imageJSON struct {
	Name      string          `json:"name"`
	Node      string          `json:"node"`
	State     string          `json:"state"`
	Kernel    string          `json:"kernel"`
	Vmlinux   string          `json:"vmlinux,omitempty"`
	Initrd    string          `json:"initrd,omitempty"`
	Rootfs    string          `json:"rootfs"`
	BootArgs  string          `json:"boot_args,omitempty"`
	Arch      string          `json:"arch"`
	Init      string          `json:"init"`
	CloudInit bool            `json:"cloud_init"`
	Files     []app.ImageFile `json:"files"`
	Source    string          `json:"source"`
	Reference string          `json:"reference"`
	Steps     []app.JobStep   `json:"steps"`
	Error     string          `json:"error,omitempty"`
	Log       string          `json:"log,omitempty"`
	UsedBy    []string        `json:"used_by"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func toImageJSON(im *app.Image) imageJSON {
	j := imageJSON{Name: im.Name, Node: im.Node, State: string(im.State), Kernel: im.Kernel, Vmlinux: im.Vmlinux, Initrd: im.Initrd,
		Rootfs: im.Rootfs, BootArgs: im.BootArgs, Arch: im.Arch, Init: im.Init, CloudInit: im.CloudInit, Files: im.Files,
		Source: im.Source, Reference: im.Reference, Steps: im.Steps, Error: im.Error, Log: im.Log, UsedBy: im.UsedBy,
		CreatedAt: im.CreatedAt, UpdatedAt: im.UpdatedAt}
	if j.Files == nil {
		j.Files = []app.ImageFile{}
	}
	if j.UsedBy == nil {
		j.UsedBy = []string{}
	}
	return j
}

// imageBody is POST /v1/images: a name and how to make it, built or imported.
type imageBody struct {
	Name  string `json:"name"`
	Build *struct {
		Release string `json:"release"`
		Init    string `json:"init"`
		Size    string `json:"size"`
		Mirror  string `json:"mirror"`
	} `json:"build"`
	Import *struct {
		Kernel string `json:"kernel"`
		Initrd string `json:"initrd"`
		Rootfs string `json:"rootfs"`
		// Or an OCI image: from a registry, or an archive in the image directories.
		OCI        string `json:"oci"`
		OCIArchive string `json:"oci_archive"`
		KernelFrom string `json:"kernel_from"`
		Size       string `json:"size"`
	} `json:"import"`
}

func (s *Server) images() error {
	if s.Images == nil {
		return app.Errorf(app.EUNAVAILABLE, "this manager keeps no images")
	}
	return nil
}

func (s *Server) apiListImages(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	list, err := s.Images.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]imageJSON, len(list))
	for i, im := range list {
		out[i] = toImageJSON(im)
	}
	return c.JSON(http.StatusOK, map[string]any{"images": out})
}

func (s *Server) apiGetImage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	im, err := s.Images.Get(c.Request().Context(), c.QueryParam("node"), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toImageJSON(im))
}

// apiCreateImage starts a build or an import: 202 with the image, building; GET it to
// follow its steps.
func (s *Server) apiCreateImage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	var body imageBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var im *app.Image
	var err error
	switch {
	case (body.Build == nil) == (body.Import == nil):
		return app.Invalid(map[string]string{"build/import": "give exactly one: how to build the image, or the files to import it from"})
	case body.Build != nil:
		im, err = s.Images.StartBuild(ctx, body.Name, image.BuildSpec{Release: body.Build.Release, Init: body.Build.Init,
			Size: body.Build.Size, Mirror: body.Build.Mirror}, actor(c))
	default:
		// Files named over the API come from the image directories only, as VM inputs do.
		resolve := vm.ImageDirs(s.VMs.ImageDirs()).Resolve
		in := body.Import
		switch {
		case (in.OCI != "" || in.OCIArchive != "") && (in.Kernel != "" || in.Initrd != "" || in.Rootfs != ""):
			return app.Invalid(map[string]string{"import": "give files (kernel, rootfs) or an OCI image (oci, oci_archive), not both"})
		case in.OCI != "" || in.OCIArchive != "" || in.KernelFrom != "":
			im, err = s.Images.StartOCI(ctx, body.Name, image.OCISource{Ref: in.OCI, Archive: in.OCIArchive, KernelFrom: in.KernelFrom,
				Size: in.Size}, resolve, actor(c))
		default:
			im, err = s.Images.StartImport(ctx, body.Name, image.ImportFiles{Kernel: in.Kernel, Initrd: in.Initrd, Rootfs: in.Rootfs}, resolve, actor(c))
		}
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/images/"+im.Name)
	return c.JSON(http.StatusAccepted, toImageJSON(im))
}

func (s *Server) apiDeleteImage(c echo.Context) error {
	if err := s.images(); err != nil {
		return err
	}
	if err := s.Images.Delete(c.Request().Context(), c.QueryParam("node"), c.Param("name"), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
