package vm

import (
	"context"
	"errors"
	"os"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/store"
)

// inputs are the files and boot arguments vm boots with under driver: its own, and where
// it names none, its image's (the uncompressed kernel for Firecracker).
func (s *Service) inputs(ctx context.Context, vm *app.VM, driver string) (kernel, initrd, rootfs, bootArgs string, err error) {
	kernel, initrd, rootfs, bootArgs = vm.Kernel, vm.Initrd, vm.Rootfs, vm.BootArgs
	if vm.Image == "" {
		return kernel, initrd, rootfs, bootArgs, nil
	}
	im, err := s.db.Image(ctx, vm.Node, vm.Image)
	if err != nil {
		return "", "", "", "", app.Errorf(app.EINVALID, "cannot start %s: its image %s: %s", vm.Name, vm.Image, app.ErrorMessage(err))
	}
	if kernel == "" {
		kernel = im.KernelFor(driver)
	}
	if initrd == "" {
		initrd = im.Initrd
	}
	if rootfs == "" {
		rootfs = im.Rootfs
	}
	if bootArgs == "" {
		bootArgs = im.BootArgs
	}
	return kernel, initrd, rootfs, bootArgs, nil
}

func (s *Service) spec(ctx context.Context, vm *app.VM, driver string) (hypervisor.Spec, error) {
	kernel, initrd, rootfs, bootArgs, err := s.inputs(ctx, vm, driver)
	if err != nil {
		return hypervisor.Spec{}, err
	}
	// The hypervisor gets the paths with their links resolved, checked now: the files may
	// have changed since the VM was defined.
	if err := s.rt.ImageDirs.resolveImages(&kernel, &initrd, &rootfs, true); err != nil {
		return hypervisor.Spec{}, app.Errorf(app.EINVALID, "cannot start %s: %s", vm.Name, app.ErrorMessage(err))
	}
	files := s.files(vm.ID)
	spec := hypervisor.Spec{VMID: vm.ID, Name: vm.Name, VCPUs: vm.VCPUs, MemoryMiB: vm.MemoryMiB, Kernel: kernel,
		Initrd: initrd, BootArgs: bootArgs, MAC: vm.MAC, Dir: files.Run(), Console: files.Console()}
	if rootfs != "" {
		spec.Disks = append(spec.Disks, hypervisor.Disk{ID: "rootfs", Path: rootfs, Root: true})
	}
	if vm.Provisioned && s.seeder != nil {
		// The seed is rendered now, from the record (name, address, tokens) and the sealed
		// secrets, and removed when the VM stops.
		sealed, err := s.secrets(ctx, vm)
		if err != nil {
			return hypervisor.Spec{}, app.Errorf(app.EINVALID, "cannot start %s: %s", vm.Name, app.ErrorMessage(err))
		}
		seed := files.RunSeed()
		if err := s.seeder.Render(seed, vm, sealed); err != nil {
			if app.NoSpace(err) {
				return hypervisor.Spec{}, err
			}
			return hypervisor.Spec{}, app.Errorf(app.EINVALID, "cannot start %s: its seed cannot be rendered: %s", vm.Name, err)
		}
		spec.Disks = append(spec.Disks, hypervisor.Disk{ID: "seed", Path: seed, ReadOnly: true})
	}
	return spec, nil
}

func (s *Service) driver(vm *app.VM) (string, hypervisor.Driver, error) {
	name := vm.Hypervisor
	if name == "" {
		name = s.rt.Default
	}
	d := s.rt.Drivers[name]
	if d == nil {
		return "", nil, app.Errorf(app.EUNAVAILABLE, "the %s hypervisor is not available on this host", name)
	}
	return name, d, nil
}

// Start boots a defined, stopped or failed VM. It returns once the hypervisor runs the VM,
// or with the reason it could not (the VM is then failed with that reason).
func (s *Service) Start(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.launch(ctx, id, by, app.AuditVMStart, "", nil)
}

// launch starts a VM's hypervisor: boot, when set, instead of the driver's Start (a
// restore from a snapshot), recorded as action with detail.
func (s *Service) launch(ctx context.Context, id string, by app.Actor, action, detail string,
	boot func(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error)) (*app.VM, error) {
	if s.rt == nil {
		return nil, app.Errorf(app.EUNAVAILABLE, "this manager runs no hypervisor")
	}
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.own(vm); err != nil {
		return nil, err
	}
	switch vm.State {
	case app.VMDefined, app.VMStopped, app.VMFailed:
	default:
		return nil, app.Errorf(app.ECONFLICT, "VM %s is %s", vm.Name, vm.State)
	}
	name, d, err := s.driver(vm)
	if err != nil {
		return nil, err
	}
	if boot == nil {
		boot = d.Start
	}
	if detail == "" {
		detail = "starting " + vm.Name + " with " + name
	}
	spec, err := s.spec(ctx, vm, name)
	if err != nil {
		return nil, err
	}
	if spec.BootArgs == "" { // the operator wrote none: what this driver's guests need
		spec.BootArgs = DefaultBootArgs(d, spec)
	}
	if err := s.db.SetRun(ctx, id, store.Run{State: app.VMStarting, Driver: name, From: []app.VMState{app.VMDefined, app.VMStopped, app.VMFailed}},
		entry(by, action, id, detail)); err != nil {
		s.dropSeed(id)
		return nil, err
	}
	if s.rt.Network != nil {
		if err := s.rt.Network.EnsureBridge(); err == nil {
			spec.Tap, err = s.rt.Network.AddTap(id)
		}
		if err != nil {
			s.db.SetRun(context.Background(), id, store.Run{State: app.VMFailed, Driver: name, Reason: err.Error()}, nil) //nolint:errcheck
			s.dropSeed(id)
			return nil, app.Errorf(app.EUNAVAILABLE, "%s cannot be networked: %s", vm.Name, err)
		}
	}
	bootCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := boot(bootCtx, spec)
	if err != nil {
		s.delTap(id)
		s.dropSeed(id)
		reason := err.Error()
		s.db.SetRun(context.Background(), id, store.Run{State: app.VMFailed, Driver: name, Reason: reason}, //nolint:errcheck // the start error is the story
			entry(by, app.AuditVMState, id, vm.Name+" failed to start: "+reason))
		return nil, app.Errorf(app.EINVALID, "%s failed to start: %s", vm.Name, reason)
	}
	if err := s.db.SetRun(context.Background(), id, store.Run{State: app.VMRunning, PID: m.PID(), Identity: m.Identity(), Driver: name}, nil); err != nil {
		m.Stop(context.Background(), time.Second) //nolint:errcheck // cannot record it: do not leave it running
		s.dropSeed(id)
		return nil, err
	}
	s.supervise(id, name, m, by)
	if action == app.AuditRestore && s.afterRestore != nil {
		restored := *vm
		s.rt.wg.Add(1)
		go func() {
			defer s.rt.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			detail, err := s.afterRestore(ctx, &restored)
			if err != nil {
				detail = "after the restore: " + err.Error()
			}
			system := app.Actor{Kind: app.ActorSystem, Name: "manager"}
			if err := s.db.Audit(context.Background(), *entry(system, app.AuditRestore, id, detail)); err != nil {
				s.rt.Logger.Warn("audit after a restore", "vm", id, "error", err)
			}
		}()
	}
	return s.db.VM(ctx, id)
}

// dropSeed removes the seed rendered for a run that is over (or never began): the next
// start renders it again.
func (s *Service) dropSeed(id string) {
	if err := os.Remove(s.files(id).RunSeed()); err != nil && !errors.Is(err, os.ErrNotExist) && s.rt != nil {
		s.rt.Logger.Warn("remove the seed of a stopped VM", "vm", id, "error", err)
	}
}

// DefaultBootArgs is the kernel command line a VM gets under d when it names none.
func DefaultBootArgs(d hypervisor.Driver, spec hypervisor.Spec) string {
	if b, ok := d.(hypervisor.BootArgser); ok {
		return b.DefaultBootArgs(spec)
	}
	return "console=ttyS0"
}

// BootArgsFor is the command line vm would boot with now: its own, its image's, or its
// driver's default for its disks. It is what the pages show.
func (s *Service) BootArgsFor(ctx context.Context, vm *app.VM) (args string, derived bool) {
	if vm.BootArgs != "" {
		return vm.BootArgs, false
	}
	if s.rt == nil {
		return "", true
	}
	name, d, err := s.driver(vm)
	if err != nil {
		return "", true
	}
	_, _, rootfs, args, err := s.inputs(ctx, vm, name)
	if err != nil || args != "" {
		return args, true
	}
	spec := hypervisor.Spec{}
	if rootfs != "" {
		spec.Disks = []hypervisor.Disk{{ID: "rootfs", Root: true}}
	}
	return DefaultBootArgs(d, spec), true
}
