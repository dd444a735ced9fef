package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/hypervisor/hostnet"
	"hearth/app/store"
)

// Runtime configures running VMs: the drivers at hand and where VMs' files live.
type Runtime struct {
	Drivers map[string]hypervisor.Driver // by name: "firecracker", "qemu"
	Default string                       // driver for VMs that name none
	DataDir string
	// ImageDirs are where VM inputs may come from (default: the data dir's images/).
	ImageDirs   ImageDirs
	StopTimeout time.Duration // graceful shutdown before the kill (default 30 s)
	Logger      *slog.Logger
	// Network gives each VM a tap on the host bridge; nil starts VMs without a NIC.
	Network *hostnet.Net
}

// Attacher is a driver that can take over a hypervisor process a previous manager started.
type Attacher interface {
	// Attach takes over pid, which must be the process identified by identity.
	Attach(ctx context.Context, spec hypervisor.Spec, pid int, identity string) (hypervisor.Machine, error)
}

type runtime struct {
	Runtime
	mu      sync.Mutex
	running map[string]*run
	wg      sync.WaitGroup
}

type run struct {
	m        hypervisor.Machine
	driver   string
	stopping bool
	stopAt   time.Time // when the stop was asked for
	restart  bool
	detached bool // another manager will take over; record nothing
	by       app.Actor
}

// WithRuntime lets the service start and stop VMs.
func (s *Service) WithRuntime(rt Runtime) *Service {
	if rt.StopTimeout == 0 {
		rt.StopTimeout = 30 * time.Second
	}
	if rt.Logger == nil {
		rt.Logger = slog.New(slog.DiscardHandler)
	}
	if len(rt.ImageDirs) == 0 {
		rt.ImageDirs = ImageDirs{DefaultImageDir(rt.DataDir)}
	}
	s.rt = &runtime{Runtime: rt, running: map[string]*run{}}
	return s
}

// DefaultImageDir is where VM inputs live unless HEARTH_IMAGE_DIRS says otherwise.
func DefaultImageDir(dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	return filepath.Join(dataDir, "images")
}

func (rt *runtime) vmDir(id string) string { return filepath.Join(rt.DataDir, "vms", id) }

func (s *Service) delTap(id string) {
	if s.rt.Network != nil {
		if err := s.rt.Network.DelTap(id); err != nil {
			s.rt.Logger.Warn("remove tap", "vm", id, "error", err)
		}
	}
}

// ImageDirs are where VM inputs may come from; nil for a manager that runs no VMs.
func (s *Service) ImageDirs() []string {
	if s.rt == nil {
		return nil
	}
	return s.rt.ImageDirs
}

// CanRun reports whether this manager can start VMs at all.
func (s *Service) CanRun() bool { return s.rt != nil && len(s.rt.Drivers) > 0 }

// Machine returns the running VM's machine (for counters and host stats), or nil.
func (s *Service) Machine(id string) hypervisor.Machine {
	if s.rt == nil {
		return nil
	}
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	if r := s.rt.running[id]; r != nil {
		return r.m
	}
	return nil
}

// checkImages reports, per field, the inputs that are not regular files under the image
// directories. The kernel is required to start (kernelRequired), not to define a VM.
func (rt *runtime) checkImages(kernel, initrd, rootfs string, kernelRequired bool) error {
	return rt.ImageDirs.resolveImages(&kernel, &initrd, &rootfs, kernelRequired)
}

func (s *Service) spec(vm *app.VM) (hypervisor.Spec, error) {
	// The hypervisor gets the paths with their links resolved, checked now: the files may
	// have changed since the VM was defined.
	kernel, initrd, rootfs := vm.Kernel, vm.Initrd, vm.Rootfs
	if err := s.rt.ImageDirs.resolveImages(&kernel, &initrd, &rootfs, true); err != nil {
		return hypervisor.Spec{}, app.Errorf(app.EINVALID, "cannot start %s: %s", vm.Name, app.ErrorMessage(err))
	}
	spec := hypervisor.Spec{VMID: vm.ID, Name: vm.Name, VCPUs: vm.VCPUs, MemoryMiB: vm.MemoryMiB, Kernel: kernel,
		Initrd: initrd, BootArgs: vm.BootArgs, MAC: vm.MAC, Dir: filepath.Join(s.rt.vmDir(vm.ID), "run")}
	if rootfs != "" {
		spec.Disks = append(spec.Disks, hypervisor.Disk{ID: "rootfs", Path: rootfs, Root: true})
	}
	if vm.Provisioned && s.seeder != nil {
		seed := s.seeder.SeedPath(vm.ID)
		if _, err := os.Stat(seed); err != nil {
			return hypervisor.Spec{}, app.Errorf(app.EINVALID, "cannot start %s: its seed %s is missing", vm.Name, seed)
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
	if s.rt == nil {
		return nil, app.Errorf(app.EUNAVAILABLE, "this manager runs no hypervisor")
	}
	vm, err := s.db.VM(ctx, id)
	if err != nil {
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
	spec, err := s.spec(vm)
	if err != nil {
		return nil, err
	}
	if err := s.db.SetRun(ctx, id, store.Run{State: app.VMStarting, Driver: name, From: []app.VMState{app.VMDefined, app.VMStopped, app.VMFailed}},
		entry(by, app.AuditVMStart, id, "starting "+vm.Name+" with "+name)); err != nil {
		return nil, err
	}
	if s.rt.Network != nil {
		if err := s.rt.Network.EnsureBridge(); err == nil {
			spec.Tap, err = s.rt.Network.AddTap(id)
		}
		if err != nil {
			s.db.SetRun(context.Background(), id, store.Run{State: app.VMFailed, Driver: name, Reason: err.Error()}, nil) //nolint:errcheck
			return nil, app.Errorf(app.EUNAVAILABLE, "%s cannot be networked: %s", vm.Name, err)
		}
	}
	bootCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := d.Start(bootCtx, spec)
	if err != nil {
		s.delTap(id)
		reason := err.Error()
		s.db.SetRun(context.Background(), id, store.Run{State: app.VMFailed, Driver: name, Reason: reason}, //nolint:errcheck // the start error is the story
			entry(by, app.AuditVMState, id, vm.Name+" failed to start: "+reason))
		return nil, app.Errorf(app.EINVALID, "%s failed to start: %s", vm.Name, reason)
	}
	if err := s.db.SetRun(context.Background(), id, store.Run{State: app.VMRunning, PID: m.PID(), Identity: m.Identity(), Driver: name}, nil); err != nil {
		m.Stop(context.Background(), time.Second) //nolint:errcheck // cannot record it: do not leave it running
		return nil, err
	}
	s.supervise(id, name, m, by)
	return s.db.VM(ctx, id)
}

// supervise waits for the hypervisor process and records how it ended: stopped when asked
// to, failed (with the exit and the console's last lines) when not.
func (s *Service) supervise(id, driver string, m hypervisor.Machine, by app.Actor) {
	rt := s.rt
	rt.mu.Lock()
	rt.running[id] = &run{m: m, driver: driver, by: by}
	rt.mu.Unlock()
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		<-m.Done()
		rt.mu.Lock()
		r := rt.running[id]
		if r != nil && r.m == m {
			delete(rt.running, id)
		}
		rt.mu.Unlock()
		if r != nil && r.detached {
			return
		}
		s.delTap(id) // the process that held it is gone
		ctx := context.Background()
		e := m.Exit()
		system := app.Actor{Kind: app.ActorSystem, Name: "supervisor"}
		if r != nil && r.stopping {
			// The machine waits StopTimeout for the guest to power off, then kills it: an
			// exit that late was forced, and the operator should know the guest ignored the
			// request (no ACPI handler, hung shutdown).
			detail, reason := "stopped", ""
			if time.Since(r.stopAt) >= rt.StopTimeout {
				reason = fmt.Sprintf("the guest did not power off within %s of the shutdown request and was killed", rt.StopTimeout)
				detail = "stopped by force: " + reason
				rt.Logger.Warn("guest ignored the shutdown request; killed", "vm", id, "timeout", rt.StopTimeout)
			}
			if err := s.db.SetRun(ctx, id, store.Run{State: app.VMStopped, Driver: driver, Reason: reason}, entry(r.by, app.AuditVMStop, id, detail)); err != nil {
				rt.Logger.Error("record stop", "vm", id, "error", err)
			}
			if r.restart {
				if _, err := s.Start(ctx, id, r.by); err != nil {
					rt.Logger.Warn("restart: start again", "vm", id, "error", err)
				}
			}
			return
		}
		reason := exitText(e)
		if tail := Tail(m.ConsolePath(), 10); tail != "" {
			reason += "; last console lines:\n" + tail
		}
		rt.Logger.Warn("hypervisor process died", "vm", id, "exit", exitText(e))
		if err := s.db.SetRun(ctx, id, store.Run{State: app.VMFailed, Driver: driver, Reason: reason},
			entry(system, app.AuditVMState, id, "failed: the hypervisor exited unasked ("+exitText(e)+")")); err != nil {
			rt.Logger.Error("record failure", "vm", id, "error", err)
		}
	}()
}

func exitText(e hypervisor.Exit) string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Stop asks a running VM to shut down; it returns at once with the VM stopping, and the VM
// becomes stopped when its process has exited (killed after the stop timeout).
func (s *Service) Stop(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.stop(ctx, id, by, false)
}

// Restart stops the VM and starts it again once it has stopped.
func (s *Service) Restart(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.stop(ctx, id, by, true)
}

func (s *Service) stop(ctx context.Context, id string, by app.Actor, restart bool) (*app.VM, error) {
	if s.rt == nil {
		return nil, app.Errorf(app.EUNAVAILABLE, "this manager runs no hypervisor")
	}
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return nil, err
	}
	s.rt.mu.Lock()
	r := s.rt.running[id]
	if r == nil || r.stopping {
		s.rt.mu.Unlock()
		if r != nil {
			return nil, app.Errorf(app.ECONFLICT, "VM %s is already stopping", vm.Name)
		}
		return nil, app.Errorf(app.ECONFLICT, "VM %s is %s, not running", vm.Name, vm.State)
	}
	r.stopping, r.stopAt, r.restart, r.by = true, time.Now(), restart, by
	s.rt.mu.Unlock()
	verb := "stopping"
	if restart {
		verb = "restarting"
	}
	if err := s.db.SetRun(ctx, id, store.Run{State: app.VMStopping, Keep: true}, entry(by, app.AuditVMStop, id, verb+" "+vm.Name)); err != nil {
		return nil, err
	}
	go r.m.Stop(context.Background(), s.rt.StopTimeout) //nolint:errcheck // the supervisor records the outcome
	return s.db.VM(ctx, id)
}

// Reattach runs at manager start: VMs recorded as running are taken over if their
// hypervisor process is still there, and marked stopped, with the reason, if not. A pid
// is only ever signalled once it is proven to be the process recorded at the VM's start
// (same boot id and start time): after a crash or a reboot the number may belong to
// anything, and a manager running as root must never kill a stranger.
func (s *Service) Reattach(ctx context.Context) error {
	if s.rt == nil {
		return nil
	}
	vms, err := s.db.VMs(ctx)
	if err != nil {
		return err
	}
	system := app.Actor{Kind: app.ActorSystem, Name: "manager"}
	for _, vm := range vms {
		if !vm.Busy() {
			continue
		}
		m, reason := s.takeOver(ctx, vm)
		if m != nil {
			if err := s.db.SetRun(ctx, vm.ID, store.Run{State: app.VMRunning, PID: vm.PID, Identity: m.Identity(), Driver: vm.RunningDriver},
				entry(system, app.AuditVMState, vm.ID, "re-attached after a manager restart")); err != nil {
				return err
			}
			s.supervise(vm.ID, vm.RunningDriver, m, system)
			continue
		}
		s.rt.Logger.Warn("VM not re-attached", "vm", vm.ID, "pid", vm.PID, "reason", reason)
		if err := s.db.SetRun(ctx, vm.ID, store.Run{State: app.VMStopped, Reason: reason},
			entry(system, app.AuditVMState, vm.ID, reason)); err != nil {
			return err
		}
	}
	return nil
}

// takeOver attaches to the VM's recorded hypervisor process, or says why it could not and
// what became of the process.
func (s *Service) takeOver(ctx context.Context, vm *app.VM) (hypervisor.Machine, string) {
	const prefix = "the manager restarted and "
	identity := vm.PIDIdentity
	if identity == "" {
		// Recorded by a manager older than identities: the command line check in Attach is
		// all there is, so whatever fails here is left alone.
		identity, _ = hypervisor.IdentityOf(vm.PID)
	}
	err := hypervisor.Verify(vm.PID, identity)
	var mismatch *hypervisor.MismatchError
	switch {
	case errors.Is(err, hypervisor.ErrGone):
		return nil, fmt.Sprintf(prefix+"the hypervisor process (pid %d) was gone", vm.PID)
	case errors.As(err, &mismatch):
		return nil, fmt.Sprintf(prefix+"the hypervisor process was gone: %s, which was left alone", mismatch)
	case err != nil:
		return nil, prefix + "could not check the hypervisor process: " + err.Error() + "; it was left alone"
	}
	a, ok := s.rt.Drivers[vm.RunningDriver].(Attacher)
	if !ok {
		return nil, s.killOurs(vm, identity, prefix+"cannot take over a "+vm.RunningDriver+" process")
	}
	spec := hypervisor.Spec{VMID: vm.ID, Name: vm.Name, Dir: filepath.Join(s.rt.vmDir(vm.ID), "run")}
	m, err := a.Attach(ctx, spec, vm.PID, identity)
	if err == nil {
		return m, ""
	}
	return nil, s.killOurs(vm, identity, prefix+"could not take over the hypervisor process: "+err.Error())
}

// killOurs kills a hypervisor process that cannot be taken over, so it is not orphaned,
// but only if its identity was recorded at start and still matches: a process found by
// its command line alone is left running, and the reason says so.
func (s *Service) killOurs(vm *app.VM, identity, reason string) string {
	if vm.PIDIdentity == "" {
		return fmt.Sprintf("%s; pid %d was left alone (no identity was recorded for it)", reason, vm.PID)
	}
	if err := hypervisor.SignalVerified(vm.PID, identity, syscall.SIGKILL); err != nil {
		return fmt.Sprintf("%s; pid %d was not killed: %s", reason, vm.PID, err)
	}
	return reason + "; it was killed"
}

// Detach lets go of every running VM without stopping it, as at manager shutdown: the VMs
// keep running and the next manager re-attaches to them.
func (s *Service) Detach() {
	if s.rt == nil {
		return
	}
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	for id, r := range s.rt.running {
		r.detached = true
		if rel, ok := r.m.(hypervisor.Releaser); ok {
			rel.Release()
		}
		delete(s.rt.running, id)
	}
}

// WaitIdle waits for supervisors to finish (tests, shutdown).
func (s *Service) WaitIdle() {
	if s.rt != nil {
		s.rt.wg.Wait()
	}
}

// Tail returns the last n lines of a text file, "" if it cannot be read.
func Tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const window = 16 << 10
	off := st.Size() - window
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	buf = bytes.TrimRight(buf, "\n")
	lines := strings.Split(strings.ToValidUTF8(string(buf), "?"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ConsoleTail returns the last n lines of the VM's serial console.
func (s *Service) ConsoleTail(id string, n int) string {
	if s.rt == nil {
		return ""
	}
	return Tail(filepath.Join(s.rt.vmDir(id), "run", "console.log"), n)
}
