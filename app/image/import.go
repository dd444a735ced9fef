package image

import (
	"context"
	"os"
	"time"

	"hearth/app"
	pimage "hearth/provision/image"
)

// ImportFiles are the files an image is imported from.
type ImportFiles struct {
	Kernel string // bzImage or ELF; required
	Initrd string // optional
	Rootfs string // ext4; required
}

// StartImport records the image as being made and imports it from files in the background:
// they are checked for what they are, copied into the image's directory, and inspected.
// Resolve, when not nil, vets each path first (the API confines them to the image
// directories, as VM inputs are; the shell's operator may name any file they can read).
func (s *Service) StartImport(ctx context.Context, name string, files ImportFiles, resolve func(string) (string, error), by app.Actor) (*app.Image, error) {
	src := pimage.Files{Kernel: files.Kernel, Initrd: files.Initrd, Rootfs: files.Rootfs}
	if err := checkName(name); err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for field, p := range map[string]*string{"kernel": &src.Kernel, "initrd": &src.Initrd, "rootfs": &src.Rootfs} {
		if *p == "" {
			if field != "initrd" {
				fields[field] = "is required"
			}
			continue
		}
		if resolve != nil {
			real, err := resolve(*p)
			if err != nil {
				fields[field] = err.Error()
				continue
			}
			*p = real
		}
	}
	if err := app.Invalid(fields); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.root(), 0o750); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.Dir(name)); err == nil {
		return nil, app.Errorf(app.ECONFLICT, "%s already holds files; an image named %s is left from before: delete it first", s.Dir(name), name)
	}
	im := &app.Image{Name: name, State: app.ImageBuilding, Source: app.ImageImported,
		Reference: "kernel " + src.Kernel + ", rootfs " + src.Rootfs}
	if src.Initrd != "" {
		im.Reference += ", initrd " + src.Initrd
	}
	for _, st := range pimage.ImportSteps {
		im.Steps = append(im.Steps, app.JobStep{Name: st, State: app.StepPending})
	}
	if err := s.DB.CreateImage(ctx, im, entry(by, app.AuditImageCreate, "started importing image "+name+" from "+im.Reference)); err != nil {
		return nil, err
	}
	mine := *im
	mine.Steps = append([]app.JobStep(nil), im.Steps...)
	s.wg.Add(1)
	go s.importFiles(&mine, src, by)
	return im, nil
}

func (s *Service) importFiles(im *app.Image, src pimage.Files, by app.Actor) {
	defer s.wg.Done()
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var tail logTail
	current := -1
	step := func(name string) {
		for i := range im.Steps {
			if im.Steps[i].Name == name {
				if current >= 0 {
					im.Steps[current].State = app.JobDone
				}
				im.Steps[i].State, current = app.JobRunning, i
			}
		}
		if err := s.DB.UpdateImage(ctx, im, nil); err != nil && ctx.Err() == nil {
			s.logger().Warn("save image progress", "image", im.Name, "error", err)
		}
	}
	staging := s.staging(im.Name)
	os.RemoveAll(staging)
	files, facts, err := pimage.Import(ctx, src, staging, step)
	if err == nil {
		im.Init, im.CloudInit = facts.Init, facts.CloudInit
		if im.Init == "" {
			im.Init = app.InitOther
			tail.add("no /sbin/init in the root filesystem: VMs from it may not boot")
		}
		err = os.Rename(staging, s.Dir(im.Name))
	}
	s.finish(im, files, err, &tail, by)
}
