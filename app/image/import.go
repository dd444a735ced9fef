package image

import (
	"context"
	"os"

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
	if err := s.free(name); err != nil {
		return nil, err
	}
	im := &app.Image{Name: name, Node: s.Node, State: app.ImageBuilding, Source: app.ImageImported,
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
	s.launch(im, func(mine *app.Image) { s.importFiles(mine, src, by) })
	return im, nil
}

func (s *Service) importFiles(im *app.Image, src pimage.Files, by app.Actor) {
	ctx, cancel := s.jobContext()
	defer cancel()
	step, _, tail := s.progress(ctx, im)
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
	s.finish(im, files, err, tail, by)
}
