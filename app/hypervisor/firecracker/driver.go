package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"hearth/app/console"
	"hearth/app/hypervisor"
)

// Driver starts VMs with the firecracker binary.
type Driver struct {
	// Binary is the firecracker executable (default "firecracker" on PATH).
	Binary string
	// Jailer, when set, runs firecracker through the jailer.
	Jailer *Jailer
}

// Name is "firecracker".
func (d *Driver) Name() string { return "firecracker" }

// Files in a VM's run directory.
const (
	socketFile  = "firecracker.sock"
	metricsFIFO = "metrics.fifo"
	logFile     = "firecracker.log"
	// The serial port: firecracker's stdout and stdin are these FIFOs, which it holds open
	// for as long as it runs, so any manager can open them again (see serialPipes).
	serialOut  = "console.out"
	serialIn   = "console.in"
	stderrFile = "firecracker.stderr"
)

// DefaultBootArgs is the command line Firecracker's guests use: the serial console, reboot
// by keyboard controller (which Firecracker takes as the exit), no PCI. Firecracker adds
// root=/dev/vda itself for the drive marked as root.
func (d *Driver) DefaultBootArgs(hypervisor.Spec) string {
	return "console=ttyS0 reboot=k panic=1 pci=off"
}

// Start launches firecracker for spec, configures the VM over the API socket and starts it.
// On any failure the process is killed and the error says which call failed, with
// Firecracker's own fault_message.
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	m, api, err := d.spawn(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := m.configure(ctx, api, m.sock, filepath.Join(api.Dir, metricsFIFO), filepath.Join(api.Dir, logFile)); err != nil {
		m.Kill()
		<-m.Done()
		return nil, err
	}
	return m, nil
}

// spawn starts the firecracker process for spec (through the jailer when configured) with
// its serial port, metrics FIFO and log, and returns it unconfigured, with the spec as
// firecracker sees it (paths inside the jail; Dir its run directory).
func (d *Driver) spawn(ctx context.Context, spec hypervisor.Spec) (*machine, hypervisor.Spec, error) {
	bin := or(d.Binary, "firecracker")
	fail := func(err error) (*machine, hypervisor.Spec, error) { return nil, hypervisor.Spec{}, err }
	if err := os.MkdirAll(spec.Dir, 0o750); err != nil {
		return fail(err)
	}
	// Paths on the host (hostDir) and as firecracker sees them (apiDir): the same without
	// the jailer, the chroot and "/" with it.
	spec.Disks = append([]hypervisor.Disk(nil), spec.Disks...)
	for i, disk := range spec.Disks {
		if disk.ReadOnly {
			continue
		}
		private, err := privateCopy(ctx, spec.Dir, disk.ID, disk.Path)
		if err != nil {
			return fail(err)
		}
		if d.Jailer != nil {
			// The VM's own file, made for it alone: the jailed firecracker writes it.
			if err := os.Chown(private, d.Jailer.UID, d.Jailer.GID); err != nil {
				return fail(fmt.Errorf("firecracker: give the jail its disk: %w", err))
			}
		}
		spec.Disks[i].Path = private
	}
	hostDir, apiDir, api := spec.Dir, spec.Dir, spec
	var args []string
	if d.Jailer != nil {
		var err error
		if api, hostDir, err = d.Jailer.prepare(bin, spec); err != nil {
			return fail(err)
		}
		apiDir = "/"
		args = d.Jailer.args(bin, spec.VMID)
		bin = d.Jailer.Binary
	}
	sock := filepath.Join(hostDir, socketFile)
	if d.Jailer != nil {
		sock = filepath.Join(hostDir, jailSocket)
	} else {
		args = []string{"--api-sock", sock, "--id", spec.VMID}
	}
	fifo := filepath.Join(hostDir, metricsFIFO)
	logp := filepath.Join(hostDir, logFile)
	for _, p := range []string{sock, fifo} { // leftovers of a previous boot
		os.Remove(p)
	}
	// A fresh FIFO per boot: its values are deltas since the last flush, so a reader must
	// see every line of this boot and none of another.
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return fail(fmt.Errorf("firecracker: metrics fifo: %w", err))
	}
	if f, err := os.OpenFile(logp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err == nil {
		f.Close()
	}
	if d.Jailer != nil {
		for _, p := range []string{fifo, logp} {
			os.Lchown(p, d.Jailer.UID, d.Jailer.GID) //nolint:errcheck // firecracker reports what it cannot open
		}
	}
	os.WriteFile(spec.Console, nil, 0o640) //nolint:errcheck // truncate the last boot's console
	os.Remove(spec.Console + ".1")
	out, in, err := serialPipes(hostDir)
	if err != nil {
		return fail(err)
	}
	defer out.Close()
	defer in.Close()
	if d.Jailer != nil {
		for _, name := range []string{serialOut, serialIn} {
			os.Lchown(filepath.Join(hostDir, name), d.Jailer.UID, d.Jailer.GID) //nolint:errcheck
		}
	}
	stderr, err := os.OpenFile(filepath.Join(spec.Dir, stderrFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fail(err)
	}
	defer stderr.Close()
	// O_RDWR keeps the FIFO open for writing too, so the reader never sees EOF between
	// flushes, and the open does not block waiting for firecracker.
	fifoFile, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return fail(fmt.Errorf("firecracker: open metrics fifo: %w", err))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, stderr // the serial port is firecracker's stdio
	proc, err := hypervisor.StartProcess(cmd)
	if err != nil {
		fifoFile.Close()
		return fail(fmt.Errorf("firecracker: start %s: %w", bin, err))
	}
	// Its stdout must never block on a full pipe while no manager reads: the flag is the
	// open file's, shared with firecracker's copy. What does not fit is dropped.
	syscall.SetNonblock(int(out.Fd()), true) //nolint:errcheck
	m := newMachine(proc, sock, spec.Console, fifoFile)
	m.stderr = filepath.Join(spec.Dir, stderrFile)
	m.holdConsole(hostDir)
	if d.Jailer != nil {
		jail := d.Jailer.dir(or(d.Binary, "firecracker"), spec.VMID)
		go func() { <-proc.Done(); os.RemoveAll(jail) }() // the jail goes with its process
	}
	api.Dir = apiDir
	m.sock, m.hostDir, m.apiDir = sock, hostDir, apiDir
	if d.Jailer != nil {
		m.uid, m.gid = d.Jailer.UID, d.Jailer.GID
	}
	for _, disk := range spec.Disks {
		if !disk.ReadOnly {
			m.disks = append(m.disks, disk.Path)
		}
	}
	return m, api, nil
}

func newMachine(proc *hypervisor.Process, sock, console string, fifo *os.File) *machine {
	m := &machine{Process: proc, client: NewClient(sock), console: console, totals: newTotals(), fifo: fifo}
	go m.totals.readFrom(fifo)                  // the one reader of this boot's FIFO
	go func() { <-proc.Done(); fifo.Close() }() // ends the reader
	return m
}

// Attach takes over a firecracker a previous manager started: the pid must still run this
// VM (its --id), and its socket must answer. Counters restart from zero: the lines written
// while no manager read the FIFO are lost with it.
func (d *Driver) Attach(ctx context.Context, spec hypervisor.Spec, pid int, identity string) (hypervisor.Machine, error) {
	proc, err := hypervisor.FindProcess(pid, identity, "--id "+spec.VMID)
	if err != nil {
		return nil, err
	}
	hostDir, sock := spec.Dir, filepath.Join(spec.Dir, socketFile)
	if d.Jailer != nil {
		hostDir = filepath.Join(d.Jailer.dir(or(d.Binary, "firecracker"), spec.VMID), "root")
		sock = filepath.Join(hostDir, jailSocket)
	}
	fifo, err := os.OpenFile(filepath.Join(hostDir, metricsFIFO), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("firecracker: reopen metrics fifo: %w", err)
	}
	m := newMachine(proc, sock, spec.Console, fifo)
	m.stderr = filepath.Join(spec.Dir, stderrFile)
	if _, err := m.client.Describe(ctx); err != nil {
		return nil, err
	}
	m.sock, m.hostDir, m.apiDir = sock, hostDir, spec.Dir
	if d.Jailer != nil {
		m.apiDir, m.uid, m.gid = "/", d.Jailer.UID, d.Jailer.GID
	}
	m.disks, _ = filepath.Glob(filepath.Join(spec.Dir, "*.img"))
	m.holdConsole(hostDir)
	return m, nil
}

type machine struct {
	*hypervisor.Process
	client  *Client
	console string
	stderr  string
	totals  *totals
	fifo    *os.File
	hub     *console.Hub

	sock            string   // the API socket on the host
	hostDir, apiDir string   // its run directory on the host and as firecracker sees it
	uid, gid        int      // the jail's, or 0 without the jailer
	disks           []string // host paths of its writable disk copies: snapshots copy them
	// base is the memory of this run's last snapshot (a link in hostDir), which a diff
	// snapshot's dirty pages are laid over; "" before the first.
	base string
}

// Release closes this manager's end of the metrics FIFO (there must be one reader) and of
// the console, and leaves the VM running for the next manager.
func (m *machine) Release() {
	m.fifo.Close()
	if m.hub != nil {
		m.hub.Close()
	}
}

// Console is the VM's serial console.
func (m *machine) Console() *console.Hub { return m.hub }

// serialPipes makes the serial FIFOs in dir (a fresh pair per boot) and opens firecracker's
// ends: stdout and stdin, both read-write, so firecracker never sees EOF or EPIPE whether
// or not a manager has the other ends open.
func serialPipes(dir string) (out, in *os.File, err error) {
	for _, name := range []string{serialOut, serialIn} {
		p := filepath.Join(dir, name)
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			return nil, nil, fmt.Errorf("firecracker: serial fifo: %w", err)
		}
	}
	if out, err = os.OpenFile(filepath.Join(dir, serialOut), os.O_RDWR, 0); err != nil {
		return nil, nil, fmt.Errorf("firecracker: serial fifo: %w", err)
	}
	if in, err = os.OpenFile(filepath.Join(dir, serialIn), os.O_RDWR, 0); err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("firecracker: serial fifo: %w", err)
	}
	return out, in, nil
}

// fifoConsole is the manager's side of the serial FIFOs: it reads what the guest writes and
// writes what viewers type.
type fifoConsole struct{ r, w *os.File }

func (f fifoConsole) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f fifoConsole) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f fifoConsole) Close() error                { return errors.Join(f.r.Close(), f.w.Close()) }

// holdConsole opens the hub on the serial FIFOs in dir; once firecracker has exited and
// the hub has read what was left, it lets go. Non-blocking opens: they never wait for a
// firecracker that is gone (reading then ends at once, and the hub tries again).
func (m *machine) holdConsole(dir string) {
	dial := func() (io.ReadWriteCloser, error) {
		r, err := os.OpenFile(filepath.Join(dir, serialOut), os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		w, err := os.OpenFile(filepath.Join(dir, serialIn), os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			r.Close()
			return nil, err
		}
		return fifoConsole{r, w}, nil
	}
	m.hub = console.OpenDial(dial, m.console, console.Options{})
	m.hub.CloseAfter(m.Done())
}

func (m *machine) configure(ctx context.Context, spec hypervisor.Spec, sock, fifo, logp string) error {
	if err := m.waitSocket(); err != nil {
		return err
	}
	c := m.client
	steps := []func() error{
		func() error { return c.PutLogger(ctx, Logger{LogPath: logp, Level: "Info", ShowLevel: true}) },
		func() error { return c.PutMetrics(ctx, Metrics{MetricsPath: fifo}) },
		func() error {
			// Dirty-page tracking lets a later snapshot write only the pages changed since
			// the one before (a diff snapshot), at a small cost to guest writes.
			return c.PutMachineConfig(ctx, MachineConfig{VCPUCount: spec.VCPUs, MemSizeMiB: spec.MemoryMiB, TrackDirtyPages: true})
		},
		func() error {
			return c.PutBootSource(ctx, BootSource{KernelImagePath: spec.Kernel, InitrdPath: spec.Initrd, BootArgs: spec.BootArgs})
		},
	}
	for _, disk := range spec.Disks {
		disk := disk
		steps = append(steps, func() error {
			return c.PutDrive(ctx, Drive{DriveID: disk.ID, PathOnHost: disk.Path, IsRootDevice: disk.Root, IsReadOnly: disk.ReadOnly})
		})
	}
	if spec.Tap != "" {
		steps = append(steps, func() error {
			return c.PutNetworkInterface(ctx, NetworkInterface{IfaceID: "eth0", HostDevName: spec.Tap, GuestMAC: spec.MAC})
		})
	}
	steps = append(steps, func() error { return c.Action(ctx, "InstanceStart") })
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (m *machine) ConsolePath() string { return m.console }

// Stop sends Ctrl+Alt+Del (the guest shuts down cleanly and Firecracker exits), then kills
// the process if it has not exited within timeout.
func (m *machine) Stop(ctx context.Context, timeout time.Duration) error {
	if !m.Alive() {
		return nil
	}
	if err := m.client.Action(ctx, "SendCtrlAltDel"); err != nil && m.Alive() {
		m.Kill()
	}
	select {
	case <-m.Done():
		return nil
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	m.Kill()
	<-m.Done()
	return nil
}

// Counters asks Firecracker to flush its metrics and returns the running totals once the
// flush has been read (or after a second, with what there is).
func (m *machine) Counters(ctx context.Context) (hypervisor.Counters, error) {
	_, before := m.totals.snapshot()
	if err := m.client.Action(ctx, "FlushMetrics"); err != nil {
		sum, _ := m.totals.snapshot()
		return sum, err
	}
	deadline := time.Now().Add(time.Second)
	for {
		sum, lines := m.totals.snapshot()
		if lines > before || time.Now().After(deadline) {
			return sum, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rootCopy is the VM's own root disk in its run directory (a disk's copy is <id>.img).
const rootCopy = "rootfs.img"

// privateCopy gives the VM its own copy of a writable disk's base image, made once:
// Firecracker writes to the file it is given, and the base must never change. cp
// --reflink=auto shares blocks copy-on-write where the filesystem can (btrfs, xfs) and
// --sparse keeps holes.
func privateCopy(ctx context.Context, dir, id, base string) (string, error) {
	p := filepath.Join(dir, id+".img")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := cloneFile(ctx, base, p); err != nil {
		return "", fmt.Errorf("firecracker: copy the root image %s: %w", base, err)
	}
	return p, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
