package image

import (
	"context"
	"os"
	"runtime"
	"strings"

	"hearth/app"
	pimage "hearth/provision/image"
)

// OCISource is an OCI image to make an image of: from a registry, or an archive (a
// `docker save` tarball or an OCI layout).
type OCISource struct {
	Ref     string
	Archive string
	// KernelFrom names a ready image whose kernel and initrd VMs of this one boot, for
	// images without a kernel in /boot.
	KernelFrom string
	Size       string // the root filesystem's size; default: 2G, more when the files need it
	// RemoveArchive says the archive is the manager's own (an upload), removed once the
	// import has ended, however it ended.
	RemoveArchive bool
}

// StartOCI records the image as being made and makes it of an OCI image in the background:
// pulled or read, flattened, checked for an init and cloud-init, written into ext4.
// Resolve, when not nil, vets the archive's path (the API confines it to the image
// directories).
func (s *Service) StartOCI(ctx context.Context, name string, src OCISource, resolve func(string) (string, error), by app.Actor) (im *app.Image, err error) {
	defer func() {
		if err != nil && src.RemoveArchive && src.Archive != "" {
			os.Remove(src.Archive)
		}
	}()
	if err := checkName(name); err != nil {
		return nil, err
	}
	o := pimage.OCI{Ref: strings.TrimSpace(src.Ref), Archive: strings.TrimSpace(src.Archive), Size: strings.TrimSpace(src.Size)}
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Archive != "" && resolve != nil {
		real, err := resolve(o.Archive)
		if err != nil {
			return nil, app.Invalid(map[string]string{"oci_archive": err.Error()})
		}
		o.Archive = real
	}
	ref := o.Reference()
	if src.RemoveArchive {
		ref = "uploaded archive"
	}
	if src.KernelFrom != "" {
		from, err := s.DB.Image(ctx, s.Node, src.KernelFrom)
		if err != nil || from.State != app.ImageReady {
			return nil, app.Invalid(map[string]string{"kernel_from": "no ready image is named " + src.KernelFrom})
		}
		o.KernelFrom = s.Dir(from.Name)
		ref += ", kernel from " + from.Name
	}
	if err := s.free(name); err != nil {
		return nil, err
	}
	im = &app.Image{Name: name, Node: s.Node, State: app.ImageBuilding, Source: app.ImageOCI, Reference: ref, Arch: runtime.GOARCH}
	for _, st := range pimage.OCISteps {
		im.Steps = append(im.Steps, app.JobStep{Name: st, State: app.StepPending})
	}
	if err := s.DB.CreateImage(ctx, im, entry(by, app.AuditImageCreate, "started importing image "+name+" from OCI "+ref)); err != nil {
		return nil, err
	}
	s.launch(im, func(mine *app.Image) { s.importOCI(mine, o, src.RemoveArchive, by) })
	return im, nil
}

func (s *Service) importOCI(im *app.Image, o pimage.OCI, removeArchive bool, by app.Actor) {
	if removeArchive {
		defer os.Remove(o.Archive)
	}
	ctx, cancel := s.jobContext()
	defer cancel()
	step, logLine, tail := s.progress(ctx, im)
	staging := s.staging(im.Name)
	os.RemoveAll(staging)
	files, facts, digest, err := pimage.ImportOCI(ctx, o, staging, step, logLine)
	if err == nil {
		im.Init, im.CloudInit = facts.Init, facts.CloudInit
		if o.Ref != "" && digest != "" && !strings.Contains(o.Ref, "@") {
			im.Reference = strings.Replace(im.Reference, o.Ref, o.Ref+"@"+digest, 1)
		}
		err = os.Rename(staging, s.Dir(im.Name))
	}
	s.finish(im, files, err, tail, by)
}
