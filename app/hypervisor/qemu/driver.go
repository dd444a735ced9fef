// Package qemu runs VMs with qemu-system-x86_64: direct kernel boot, virtio disks (a per-VM
// copy-on-write overlay of the root image, the seed read-only), a tap netdev, the serial
// console on a unix socket (held by a console.Hub, which logs it), and QMP on a unix socket
// for status, shutdown and block statistics.
// It uses KVM when /dev/kvm is usable and software emulation (TCG) otherwise.
package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"hearth/app/console"
	"hearth/app/hypervisor"
)

// Driver starts VMs with QEMU.
type Driver struct {
	Binary string // default qemu-system-x86_64
	Img    string // default qemu-img
	// Accel forces "kvm" or "tcg"; "" picks kvm when /dev/kvm can be opened.
	Accel string
}

// Name is "qemu".
func (d *Driver) Name() string { return "qemu" }

// Files in a VM's run directory.
const (
	qmpSocket = "qmp.sock"
	// ConsoleSocket is the serial port's socket in the run directory: QEMU serves it and
	// keeps it as long as the VM runs, so a manager that restarts reconnects to it.
	ConsoleSocket = "console.sock"
	overlayFile   = "rootfs.qcow2"
)

func (d *Driver) accel() string {
	if d.Accel != "" {
		return d.Accel
	}
	if KVMUsable() {
		return "kvm"
	}
	return "tcg"
}

// KVMUsable reports whether QEMU can run guests with KVM: /dev/kvm opens and the CPU has
// hardware virtualisation (vmx or svm). The second check matters: some nested hosts offer
// /dev/kvm through kvm-pvm, which opens fine but only runs PVM-aware guest kernels, and an
// ordinary guest then hangs at 100 % CPU without printing a line.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if strings.HasPrefix(line, "flags") {
			for _, f := range strings.Fields(line) {
				if f == "vmx" || f == "svm" {
					return true
				}
			}
			return false
		}
	}
	return false
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Overlay makes (once) the VM's copy-on-write overlay of a base image, so the base is never
// written. The overlay lives in the VM's directory and survives restarts.
func (d *Driver) Overlay(ctx context.Context, dir, base string) (string, error) {
	p := filepath.Join(dir, overlayFile)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	info, err := exec.CommandContext(ctx, or(d.Img, "qemu-img"), "info", "--output=json", base).Output()
	if err != nil {
		return "", fmt.Errorf("qemu: cannot read the root image %s: %w", base, err)
	}
	var fi struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(info, &fi); err != nil || fi.Format == "" {
		return "", fmt.Errorf("qemu: cannot tell the format of %s", base)
	}
	abs, _ := filepath.Abs(base)
	tmp := p + ".tmp"
	if out, err := exec.CommandContext(ctx, or(d.Img, "qemu-img"), "create", "-q", "-f", "qcow2", "-b", abs, "-F", fi.Format, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("qemu: create overlay: %v: %s", err, out)
	}
	return p, os.Rename(tmp, p)
}

// DefaultBootArgs is the command line a guest needs under QEMU: the console on the first
// serial port, and the root disk, which is the first virtio disk (vda), read-write; a
// kernel panic powers the VM off rather than rebooting it (-no-reboot).
func (d *Driver) DefaultBootArgs(spec hypervisor.Spec) string {
	args := "console=ttyS0 panic=-1"
	if spec.RootDisk() {
		args += " root=/dev/vda rw"
	}
	return args
}

// Start boots spec. The root disk's Path is the base image; the guest gets an overlay.
func (d *Driver) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
	m, err := d.boot(ctx, spec, nil)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// boot starts QEMU for spec: with the kernel, or, given incoming, from the migration
// stream in that file (a snapshot's memory and device state), which it reads as fd 3.
func (d *Driver) boot(ctx context.Context, spec hypervisor.Spec, incoming *os.File) (*machine, error) {
	if err := os.MkdirAll(spec.Dir, 0o750); err != nil {
		return nil, err
	}
	sock := filepath.Join(spec.Dir, qmpSocket)
	os.Remove(sock)
	consoleSock := filepath.Join(spec.Dir, ConsoleSocket)
	os.Remove(consoleSock)
	os.WriteFile(spec.Console, nil, 0o640) //nolint:errcheck // truncate the last boot's console
	os.Remove(spec.Console + ".1")
	// -S: the guest starts once the console is held, so its first line is in the log.
	args := []string{"-name", "hearth-" + spec.VMID, "-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "pc,accel=" + d.accel(), "-smp", strconv.Itoa(spec.VCPUs), "-m", strconv.Itoa(spec.MemoryMiB),
		"-chardev", "socket,id=ser0,path=" + consoleSock + ",server=on,wait=off", "-serial", "chardev:ser0",
		"-kernel", spec.Kernel, "-append", spec.BootArgs,
		"-qmp", "unix:" + sock + ",server=on,wait=off", "-no-reboot", "-S"}
	if incoming != nil {
		args = append(args, "-incoming", "fd:3")
	}
	if spec.Initrd != "" {
		args = append(args, "-initrd", spec.Initrd)
	}
	var writable []string
	for i, disk := range spec.Disks {
		path, format := disk.Path, "raw"
		if disk.Root && !disk.ReadOnly {
			ov, err := d.Overlay(ctx, spec.Dir, disk.Path)
			if err != nil {
				return nil, err
			}
			path, format = ov, "qcow2"
		}
		id := fmt.Sprintf("disk%d", i)
		drive := fmt.Sprintf("file=%s,if=none,id=%s,format=%s,cache=writeback", path, id, format)
		if disk.ReadOnly {
			drive += ",readonly=on"
		} else {
			writable = append(writable, id)
		}
		args = append(args, "-drive", drive, "-device", "virtio-blk-pci,drive="+id+",serial="+disk.ID)
	}
	if spec.Tap != "" {
		args = append(args, "-netdev", "tap,id=net0,ifname="+spec.Tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=net0,mac="+spec.MAC)
	}
	cmd := exec.Command(or(d.Binary, "qemu-system-x86_64"), args...)
	if incoming != nil {
		cmd.ExtraFiles = []*os.File{incoming}
	}
	logf, err := os.OpenFile(filepath.Join(spec.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := hypervisor.StartProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("qemu: start: %w", err)
	}
	m := &machine{Process: proc, dir: spec.Dir, console: spec.Console, tap: spec.Tap, writable: writable}
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := dialQMP(ctx, sock)
		if err == nil {
			m.qmp = q
			m.holdConsole(consoleSock)
			if !m.hub.WaitConnected(10 * time.Second) {
				m.Kill()
				<-m.Done()
				return nil, errors.New("qemu: the serial console socket did not answer within 10 s")
			}
			if incoming != nil {
				if err := m.awaitIncoming(ctx); err != nil {
					m.Kill()
					<-m.Done()
					return nil, err
				}
			}
			if _, err := q.exec(ctx, "cont", nil); err != nil {
				m.Kill()
				<-m.Done()
				return nil, fmt.Errorf("qemu: start the guest: %w", err)
			}
			return m, nil
		}
		select {
		case <-m.Done():
			log, _ := os.ReadFile(filepath.Join(spec.Dir, "qemu.log"))
			return nil, fmt.Errorf("qemu exited at start (exit %d): %s", m.Exit().Code, strings.TrimSpace(string(log)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Kill()
			<-m.Done()
			return nil, fmt.Errorf("qemu: no QMP socket within 10 s: %w", err)
		}
	}
}

type machine struct {
	*hypervisor.Process
	dir      string
	console  string
	tap      string
	qmp      *qmp
	hub      *console.Hub
	writable []string // drive ids of the writable disks (qcow2 overlays): snapshots keep them
}

func (m *machine) ConsolePath() string { return m.console }

// Console is the VM's serial console.
func (m *machine) Console() *console.Hub { return m.hub }

// holdConsole opens the hub on the console socket; once QEMU has exited and the hub has
// read what was left, it lets go.
func (m *machine) holdConsole(sock string) {
	m.hub = console.Open(sock, m.console, console.Options{})
	m.hub.CloseAfter(m.Done())
}

// Release closes the QMP connection (QEMU serves one client at a time) and leaves the VM
// running for the next manager.
func (m *machine) Release() {
	if m.qmp != nil {
		m.qmp.close()
	}
	if m.hub != nil {
		m.hub.Close()
	}
}

// Attach takes over a QEMU a previous manager started: the pid must still run this VM
// (its -name), and its QMP socket must answer.
func (d *Driver) Attach(ctx context.Context, spec hypervisor.Spec, pid int, identity string) (hypervisor.Machine, error) {
	proc, err := hypervisor.FindProcess(pid, identity, "-name hearth-"+spec.VMID+" ")
	if err != nil {
		return nil, err
	}
	q, err := dialQMP(ctx, filepath.Join(spec.Dir, qmpSocket))
	if err != nil {
		return nil, fmt.Errorf("qemu: QMP of pid %d: %w", pid, err)
	}
	m := &machine{Process: proc, dir: spec.Dir, console: spec.Console, tap: spec.Tap, qmp: q}
	if m.writable, err = q.writableDrives(ctx); err != nil {
		q.close()
		return nil, fmt.Errorf("qemu: the drives of pid %d: %w", pid, err)
	}
	m.holdConsole(filepath.Join(spec.Dir, ConsoleSocket))
	return m, nil
}

// Stop presses the ACPI power button (system_powerdown) and waits; then asks QEMU to quit;
// then kills it.
func (m *machine) Stop(ctx context.Context, timeout time.Duration) error {
	defer func() {
		if m.qmp != nil {
			m.qmp.close()
		}
	}()
	if !m.Alive() {
		return nil
	}
	if m.qmp != nil {
		if _, err := m.qmp.exec(ctx, "system_powerdown", nil); err == nil {
			select {
			case <-m.Done():
				return nil
			case <-time.After(timeout):
			case <-ctx.Done():
			}
		}
		m.qmp.exec(ctx, "quit", nil) //nolint:errcheck // the kill below is the fallback
		select {
		case <-m.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	m.Kill()
	<-m.Done()
	return nil
}

// Counters: disks from query-blockstats; network from the host side of the tap.
func (m *machine) Counters(ctx context.Context) (hypervisor.Counters, error) {
	var c hypervisor.Counters
	raw, err := m.qmp.exec(ctx, "query-blockstats", nil)
	if err != nil {
		return c, err
	}
	var bs blockstats
	if err := json.Unmarshal(raw, &bs); err != nil {
		return c, fmt.Errorf("qemu: blockstats: %w", err)
	}
	for _, b := range bs {
		if b.Stats.RdBytes < 0 || b.Stats.WrBytes < 0 || b.Stats.RdOps < 0 || b.Stats.WrOps < 0 {
			return c, errors.New("qemu: negative block counters")
		}
		c.DiskReadBytes += uint64(b.Stats.RdBytes)
		c.DiskWriteBytes += uint64(b.Stats.WrBytes)
		c.DiskReads += uint64(b.Stats.RdOps)
		c.DiskWrites += uint64(b.Stats.WrOps)
	}
	c.NoNet = true
	if m.tap != "" {
		if st, err := tapStats(m.tap); err == nil {
			// What the guest sends is what the tap receives, and the other way round.
			c.NetRxBytes, c.NetTxBytes, c.NetRxPackets, c.NetTxPackets = st.TxBytes, st.RxBytes, st.TxPackets, st.RxPackets
			c.NoNet = false
		}
	}
	return c, nil
}

// Status asks QEMU what the VM is doing ("running", "shutdown", …).
func (m *machine) Status(ctx context.Context) (string, error) {
	raw, err := m.qmp.exec(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	return st.Status, json.Unmarshal(raw, &st)
}
