package vm

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/hypervisor/hostnet"
)

// Runtime configures running VMs: the drivers at hand, where their images may come from,
// how long a stop may take, their network.
type Runtime struct {
	Drivers map[string]hypervisor.Driver // by name: "firecracker", "qemu"
	Default string                       // driver for VMs that name none
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

type runner struct {
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
	op       string // a pause, snapshot or restore under way ("" for none); see runner.begin
	restore  bool   // stopped to be restored from a snapshot: the restore records what follows
}

// WithRuntime lets the service start and stop VMs.
func (s *Service) WithRuntime(rt Runtime) *Service {
	if rt.StopTimeout == 0 {
		rt.StopTimeout = 30 * time.Second
	}
	if rt.Logger == nil {
		rt.Logger = slog.New(slog.DiscardHandler)
	}
	// The data dir's images/ always counts: the images Hearth builds and imports live
	// there. HEARTH_IMAGE_DIRS adds to it.
	if own := DefaultImageDir(s.dataDir); s.dataDir != "" && !slices.Contains(rt.ImageDirs, own) {
		rt.ImageDirs = append(ImageDirs{own}, rt.ImageDirs...)
	}
	s.rt = &runner{Runtime: rt, running: map[string]*run{}}
	return s
}

// DefaultImageDir is where VM inputs live unless HEARTH_IMAGE_DIRS says otherwise.
func DefaultImageDir(dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	return filepath.Join(dataDir, "images")
}

func (s *Service) delTap(id string) {
	if s.rt.Network != nil {
		if err := s.rt.Network.DelTap(id); err != nil {
			s.rt.Logger.Warn("remove tap", "vm", id, "error", err)
		}
	}
}

// ImageDirs are where VM inputs may come from: the data dir's images/ and the configured
// ones; without a runtime, the data dir's images/ alone (nil without a data dir).
func (s *Service) ImageDirs() []string {
	if s.rt != nil {
		return s.rt.ImageDirs
	}
	if s.dataDir == "" {
		return nil
	}
	return []string{DefaultImageDir(s.dataDir)}
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
func (rt *runner) checkImages(kernel, initrd, rootfs string, kernelRequired bool) error {
	return rt.ImageDirs.resolveImages(&kernel, &initrd, &rootfs, kernelRequired)
}
