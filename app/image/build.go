package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"hearth/app"
	pimage "hearth/provision/image"
)

// BuildSpec is what to build (provision/image.Spec has the defaults and the checks).
type BuildSpec struct {
	Release string // a Debian release; default bookworm
	Init    string // systemd (default) or openrc
	Size    string // the root filesystem's size; default 2G
	Mirror  string // a Debian mirror; "" for the default
}

// StartBuild records the image as building and builds it from Debian's packages in the
// background; it returns the record at once. Progress (steps, the newest log lines) is
// saved as the build goes, for the pages and the API to poll.
func (s *Service) StartBuild(ctx context.Context, name string, b BuildSpec, by app.Actor) (*app.Image, error) {
	spec := pimage.Spec{Release: b.Release, Init: b.Init, Size: b.Size, Mirror: b.Mirror}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := spec.Normalize(); err != nil {
		return nil, err
	}
	if err := s.free(name); err != nil {
		return nil, err
	}
	im := &app.Image{Name: name, Node: s.Node, State: app.ImageBuilding, Source: app.ImageBuilt, Reference: spec.Reference(),
		Arch: runtime.GOARCH, Init: spec.Init, CloudInit: true}
	for _, st := range pimage.BuildSteps {
		im.Steps = append(im.Steps, app.JobStep{Name: st, State: app.StepPending})
	}
	if err := s.DB.CreateImage(ctx, im, entry(by, app.AuditImageCreate, "started building image "+name+" ("+spec.Reference()+")")); err != nil {
		return nil, err
	}
	s.launch(im, func(mine *app.Image) { s.build(mine, spec, by) })
	return im, nil
}

func (s *Service) build(im *app.Image, spec pimage.Spec, by app.Actor) {
	ctx, cancel := s.jobContext()
	defer cancel()
	build := s.Build
	if build == nil {
		build = pimage.Build
	}
	step, logLine, tail := s.progress(ctx, im)
	staging := s.staging(im.Name)
	os.RemoveAll(staging)
	files, err := build(ctx, spec, staging, step, logLine)
	if err == nil {
		err = os.Rename(staging, s.Dir(im.Name))
	}
	s.finish(im, files, err, tail, by)
}

// finish records how a job ended, with a context of its own: the job's may have ended.
func (s *Service) finish(im *app.Image, files []app.ImageFile, err error, tail *logTail, by app.Actor) {
	fctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	im.Log = tail.String()
	e := entry(by, app.AuditImageCreate, "")
	if err != nil {
		os.RemoveAll(s.staging(im.Name))
		im.State, im.Error = app.ImageFailed, err.Error()
		var se *pimage.StepError
		failed := false
		if errors.As(err, &se) {
			for i := range im.Steps {
				if im.Steps[i].Name == se.Step {
					im.Steps[i].State, im.Steps[i].Detail, failed = app.JobFailed, se.Err.Error(), true
				}
			}
		}
		for i := range im.Steps {
			if !failed && im.Steps[i].State == app.JobRunning {
				im.Steps[i].State = app.JobFailed
			}
		}
		e.Detail = "image " + im.Name + " failed: " + err.Error()
		s.logger().Warn("image failed", "image", im.Name, "error", err)
	} else {
		dir := s.Dir(im.Name)
		im.State, im.Files = app.ImageReady, files
		for i := range im.Steps {
			im.Steps[i].State = app.JobDone
		}
		for _, f := range files {
			p := filepath.Join(dir, f.Name)
			switch f.Name {
			case pimage.KernelFile:
				im.Kernel = p
			case pimage.VmlinuxFile:
				im.Vmlinux = p
			case pimage.InitrdFile:
				im.Initrd = p
			case pimage.RootfsFile:
				im.Rootfs = p
			}
		}
		if im.Kernel == "" { // an ELF kernel only: what there is, for every driver
			im.Kernel = im.Vmlinux
		}
		e.Detail = "image " + im.Name + " is ready"
	}
	if err := s.DB.UpdateImage(fctx, im, e); err != nil {
		s.logger().Error("save image's end", "image", im.Name, "error", err)
	}
}
