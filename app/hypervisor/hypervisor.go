// Package hypervisor is the seam between VM use cases and the programs that run VMs.
// A Driver starts a configured VM as a process and hands back a Machine to stop, watch and
// measure it; firecracker/ and qemu/ implement it.
package hypervisor

import (
	"hearth/app/console"

	"context"
	"time"
)

// Disk is a block device given to the guest.
type Disk struct {
	ID       string // stable id: "rootfs", "seed"
	Path     string // file on the host
	ReadOnly bool
	Root     bool // the root device
}

// Spec is everything a driver needs to boot one VM.
type Spec struct {
	VMID      string
	Name      string
	VCPUs     int
	MemoryMiB int
	Kernel    string
	Initrd    string // optional
	BootArgs  string
	Disks     []Disk
	Tap       string // host tap device; "" for no network
	MAC       string
	// Dir is the VM's run directory: sockets, logs, FIFOs, disk copies live here.
	Dir string
	// Console is the file the guest's serial console is written to (app.VMFiles.Console).
	Console string
}

// Counters are the hypervisor's cumulative I/O counters for the VM since its start.
type Counters struct {
	NetRxBytes, NetTxBytes     uint64
	NetRxPackets, NetTxPackets uint64
	DiskReadBytes              uint64
	DiskWriteBytes             uint64
	DiskReads, DiskWrites      uint64
	// NoNet: the VM has no network, or its counters could not be read; no rate is made of
	// the zeros above.
	NoNet bool
}

// Exit says how a hypervisor process ended.
type Exit struct {
	Code   int    // exit status; -1 when killed by a signal
	Signal string // the signal, if any
	At     time.Time
}

// Machine is a running VM's hypervisor process.
type Machine interface {
	// PID is the hypervisor process's id (host-side stats and re-attach use it).
	PID() int
	// Identity names the process beyond its pid (boot id and start time): recorded with
	// the pid, it tells a later manager whether the pid still runs this VM.
	Identity() string
	// Done is closed when the process has exited; Exit then says how.
	Done() <-chan struct{}
	Exit() Exit
	// Stop asks the guest to shut down and kills the process if it has not exited
	// within timeout.
	Stop(ctx context.Context, timeout time.Duration) error
	// Counters reads the hypervisor's network and disk counters.
	Counters(ctx context.Context) (Counters, error)
	// ConsolePath is the file the guest's serial console is written to.
	ConsolePath() string
}

// Consoler is a Machine whose serial console the manager holds: output logged and shared,
// input to the guest (console.Hub).
type Consoler interface {
	Console() *console.Hub
}

// Releaser is a Machine that holds connections to its hypervisor (QMP, the metrics FIFO)
// and can let go of them without stopping the VM, so another manager can take over.
type Releaser interface {
	Release()
}

// BootArgser is a driver that knows the kernel command line a VM needs under it when the
// operator writes none: where its serial console is and what its root device is called.
type BootArgser interface {
	DefaultBootArgs(spec Spec) string
}

// RootDisk reports whether spec has a root disk.
func (s Spec) RootDisk() bool {
	for _, d := range s.Disks {
		if d.Root {
			return true
		}
	}
	return false
}

// Driver starts VMs.
type Driver interface {
	Name() string
	Start(ctx context.Context, spec Spec) (Machine, error)
}

// Pauser is a Machine whose guest's vCPUs can be frozen and thawed: the process stays,
// the guest's clock and timers stand still.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// SnapshotTag names a snapshot where a driver keeps part of it outside its directory
// (QEMU: the internal snapshot of the VM's qcow2 overlay).
func SnapshotTag(name string) string { return "hearth-" + name }

// Snapshotter is a Machine that saves its guest, which the caller has paused: memory and
// device state into dir (which exists and is empty), and its writable disks at that
// moment, into dir or kept by tag. diff asks for only what changed since the last
// snapshot where the driver can; kind says what was taken ("full" or "diff").
type Snapshotter interface {
	Snapshot(ctx context.Context, dir, tag string, diff bool) (kind string, err error)
}

// Restorer is a Driver that boots a VM from a snapshot a Snapshotter took (into dir, with
// tag) rather than from its kernel. The Machine it returns runs the guest where it was.
type Restorer interface {
	Restore(ctx context.Context, spec Spec, dir, tag string) (Machine, error)
	// DropSnapshot removes what a snapshot keeps outside its directory; m is the VM's
	// machine while it runs, else nil.
	DropSnapshot(ctx context.Context, spec Spec, m Machine, tag string) error
}
