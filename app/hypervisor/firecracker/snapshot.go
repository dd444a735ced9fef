package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"hearth/app/hypervisor"
)

// A snapshot under Firecracker is three kinds of file in the snapshot's directory:
//
//   - StateFile: the microVM's device state (PUT /snapshot/create's snapshot_path);
//   - MemoryFile: the guest's memory (its mem_file_path). A diff snapshot makes
//     Firecracker write only the pages dirtied since the run's last snapshot (the VM runs
//     with track_dirty_pages); those are laid over a copy of that snapshot's memory, so
//     every snapshot's MemoryFile is whole and restores on its own;
//   - <disk>.img: a copy of each writable disk as it was (cp --reflink=auto: shared
//     blocks where the filesystem can), since Firecracker writes to the disk file itself.
//
// Restore copies the disks back, starts a fresh firecracker, and PUT /snapshot/load with
// resume_vm: the guest continues where it was, on the same tap (named after the VM).
const (
	StateFile  = "vmstate"
	MemoryFile = "memory"
	baseLink   = "snapshot-base.mem" // in the run dir: this run's last snapshot's memory
)

// Pause freezes the guest (PATCH /vm Paused).
func (m *machine) Pause(ctx context.Context) error { return m.client.PatchVM(ctx, "Paused") }

// Resume lets it run again (PATCH /vm Resumed).
func (m *machine) Resume(ctx context.Context) error { return m.client.PatchVM(ctx, "Resumed") }

// Snapshot writes the paused guest into dir: Full, or Diff when asked and this run has an
// earlier snapshot to lay the dirty pages over.
func (m *machine) Snapshot(ctx context.Context, dir, _ string, diff bool) (string, error) {
	kind, typ := "full", "Full"
	if diff && m.base != "" {
		kind, typ = "diff", "Diff"
	}
	// Firecracker writes where it can (inside its jail): into its run dir, then moved.
	hostState, hostMem := filepath.Join(m.hostDir, "snapshot.vmstate"), filepath.Join(m.hostDir, "snapshot.mem")
	os.Remove(hostState)
	os.Remove(hostMem)
	defer os.Remove(hostState)
	defer os.Remove(hostMem)
	err := m.client.CreateSnapshot(ctx, SnapshotCreateParams{SnapshotType: typ,
		SnapshotPath: filepath.Join(m.apiDir, "snapshot.vmstate"), MemFilePath: filepath.Join(m.apiDir, "snapshot.mem")})
	if err != nil {
		return "", err
	}
	if err := move(hostState, filepath.Join(dir, StateFile)); err != nil {
		return "", err
	}
	mem := filepath.Join(dir, MemoryFile)
	if kind == "diff" {
		if err := cloneFile(ctx, m.base, mem); err != nil {
			return "", fmt.Errorf("firecracker: the base of a diff snapshot: %w", err)
		}
		if err := overlay(hostMem, mem); err != nil {
			return "", fmt.Errorf("firecracker: lay the dirty pages over the base: %w", err)
		}
	} else if err := move(hostMem, mem); err != nil {
		return "", err
	}
	for _, disk := range m.disks {
		if err := cloneFile(ctx, disk, filepath.Join(dir, filepath.Base(disk))); err != nil {
			return "", fmt.Errorf("firecracker: keep the disk at this point: %w", err)
		}
	}
	// The next diff is laid over this one: a link, so it costs no space while the
	// snapshot exists (and keeps its memory until the run ends if it is deleted).
	link := filepath.Join(m.hostDir, baseLink)
	os.Remove(link)
	if err := os.Link(mem, link); err == nil {
		m.base = link
	} else {
		m.base = "" // on another filesystem: the next snapshot is full
	}
	return kind, nil
}

// Restore boots a fresh firecracker from the snapshot in dir: disks copied back first.
func (d *Driver) Restore(ctx context.Context, spec hypervisor.Spec, dir, _ string) (hypervisor.Machine, error) {
	for _, disk := range spec.Disks {
		if disk.ReadOnly {
			continue
		}
		saved := filepath.Join(dir, disk.ID+".img")
		if _, err := os.Stat(saved); err != nil {
			return nil, fmt.Errorf("firecracker: the snapshot has no copy of disk %s: %w", disk.ID, err)
		}
		own := filepath.Join(spec.Dir, disk.ID+".img")
		if err := cloneFile(ctx, saved, own); err != nil {
			return nil, fmt.Errorf("firecracker: put the disk back as it was: %w", err)
		}
	}
	m, api, err := d.spawn(ctx, spec)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (hypervisor.Machine, error) {
		m.Kill()
		<-m.Done()
		return nil, err
	}
	// The snapshot's files, where firecracker can open them: linked into its run dir.
	state, mem := filepath.Join(m.hostDir, "restore.vmstate"), filepath.Join(m.hostDir, "restore.mem")
	for src, dst := range map[string]string{filepath.Join(dir, StateFile): state, filepath.Join(dir, MemoryFile): mem} {
		os.Remove(dst)
		if err := os.Link(src, dst); err != nil {
			if err := copyFile(src, dst); err != nil {
				return fail(fmt.Errorf("firecracker: the snapshot's files: %w", err))
			}
		}
		if m.uid != 0 || m.gid != 0 {
			os.Chown(dst, m.uid, m.gid) //nolint:errcheck // firecracker says what it cannot open
		}
	}
	defer os.Remove(state) // loaded into the process (memory is mapped: the inode stays)
	defer os.Remove(mem)
	if err := m.waitSocket(); err != nil {
		return fail(err)
	}
	c := m.client
	if err := c.PutLogger(ctx, Logger{LogPath: filepath.Join(api.Dir, logFile), Level: "Info", ShowLevel: true}); err != nil {
		return fail(err)
	}
	if err := c.PutMetrics(ctx, Metrics{MetricsPath: filepath.Join(api.Dir, metricsFIFO)}); err != nil {
		return fail(err)
	}
	if err := c.LoadSnapshot(ctx, SnapshotLoadParams{SnapshotPath: filepath.Join(api.Dir, "restore.vmstate"),
		MemBackend:      &MemoryBackend{BackendType: "File", BackendPath: filepath.Join(api.Dir, "restore.mem")},
		TrackDirtyPages: true, ResumeVM: true}); err != nil {
		return fail(err)
	}
	return m, nil
}

// DropSnapshot: a Firecracker snapshot keeps nothing outside its directory.
func (d *Driver) DropSnapshot(context.Context, hypervisor.Spec, hypervisor.Machine, string) error {
	return nil
}

// waitSocket waits until the API socket accepts a connection, not merely exists: between
// its bind and its listen a connect is refused.
func (m *machine) waitSocket() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.DialTimeout("unix", m.sock, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-m.Done():
			return fmt.Errorf("firecracker exited before opening its API socket (exit %d); see %s and %s", m.Exit().Code, m.stderr, m.console)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("firecracker did not accept connections on its API socket within 5 s")
		}
	}
}

// cloneFile copies src to dst (through dst.tmp): shared blocks where the filesystem can,
// holes kept.
func cloneFile(ctx context.Context, src, dst string) error {
	tmp := dst + ".tmp"
	if out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", src, tmp).CombinedOutput(); err != nil {
		os.Remove(tmp)
		if len(out) > 0 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return err
	}
	return os.Rename(tmp, dst)
}

// move renames src to dst, or copies it across filesystems.
func move(src, dst string) error {
	if err := os.Rename(src, dst); err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if err := copyFile(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

// overlay writes the data regions of the sparse file diff (the pages Firecracker wrote)
// over dst at the same offsets; the holes leave dst's bytes as they are.
func overlay(diff, dst string) error {
	in, err := os.Open(diff)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	const seekData, seekHole = 3, 4 // SEEK_DATA, SEEK_HOLE
	buf := make([]byte, 1<<20)
	for off := int64(0); off < st.Size(); {
		start, err := in.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return err
		}
		end, err := in.Seek(start, seekHole)
		if err != nil {
			return err
		}
		if _, err := in.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyBuffer(out, io.LimitReader(in, end-start), buf); err != nil {
			return err
		}
		off = end
	}
	return out.Sync()
}
