package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"hearth/app/hypervisor"
)

// A snapshot under QEMU is two things taken while the guest is paused:
//
//   - memory and device state: QEMU's migration stream, written to StateFile in the
//     snapshot's directory through a file descriptor passed over QMP (no shell, no
//     path on QEMU's command line);
//   - the disk at that moment: an internal snapshot (tag) of the VM's qcow2 overlay, made
//     by blockdev-snapshot-internal-sync. An internal snapshot is a set of cluster
//     references inside the overlay itself: taking it copies nothing, the running VM goes
//     on writing to the same file (its new writes go to new clusters), restoring is
//     qemu-img snapshot -a, and deleting one snapshot never touches another. An external
//     overlay chain would add a file per snapshot and need a block-commit or
//     block-stream to delete one from the middle of the chain.
//
// Restore reverts the overlay to the tag, then starts QEMU with -incoming fd:3 on the
// state file: the guest continues where it was.
const StateFile = "state.migration"

// writableDrives asks QEMU which of its drives are writable (a re-attached VM's spec
// does not list its disks).
func (q *qmp) writableDrives(ctx context.Context) ([]string, error) {
	raw, err := q.exec(ctx, "query-block", nil)
	if err != nil {
		return nil, err
	}
	var drives []struct {
		Device   string `json:"device"`
		Inserted *struct {
			RO bool `json:"ro"`
		} `json:"inserted"`
	}
	if err := json.Unmarshal(raw, &drives); err != nil {
		return nil, fmt.Errorf("qemu: query-block: %w", err)
	}
	var ids []string
	for _, d := range drives {
		if d.Inserted != nil && !d.Inserted.RO {
			ids = append(ids, d.Device)
		}
	}
	return ids, nil
}

// Pause freezes the guest's vCPUs (QMP stop).
func (m *machine) Pause(ctx context.Context) error {
	_, err := m.qmp.exec(ctx, "stop", nil)
	return err
}

// Resume lets the guest run again (QMP cont), also after a migration to a file.
func (m *machine) Resume(ctx context.Context) error {
	_, err := m.qmp.exec(ctx, "cont", nil)
	return err
}

// Snapshot keeps the writable disks as internal snapshots named tag and writes the state
// to dir/StateFile. The guest must be paused. QEMU snapshots are always full.
func (m *machine) Snapshot(ctx context.Context, dir, tag string, _ bool) (string, error) {
	var kept []string
	undo := func() {
		for _, id := range kept {
			m.qmp.exec(context.Background(), "blockdev-snapshot-delete-internal-sync", map[string]any{"device": id, "name": tag}) //nolint:errcheck
		}
	}
	for _, id := range m.writable {
		if _, err := m.qmp.exec(ctx, "blockdev-snapshot-internal-sync", map[string]any{"device": id, "name": tag}); err != nil {
			undo()
			return "", fmt.Errorf("qemu: keep the disk at this point: %w", err)
		}
		kept = append(kept, id)
	}
	if err := m.saveState(ctx, filepath.Join(dir, StateFile)); err != nil {
		undo()
		return "", err
	}
	return "full", nil
}

// saveState migrates the guest's state into path, created here, and waits for the end.
func (m *machine) saveState(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// The default bandwidth cap (32 MiB/s) is for live migration over a network; to a
	// local file of a paused guest it only makes the snapshot slower.
	if _, err := m.qmp.exec(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return err
	}
	if err := m.qmp.sendFD(ctx, "snapshot", f); err != nil {
		return err
	}
	if _, err := m.qmp.exec(ctx, "migrate", map[string]any{"uri": "fd:snapshot"}); err != nil {
		m.qmp.exec(context.Background(), "closefd", map[string]any{"fdname": "snapshot"}) //nolint:errcheck
		return err
	}
	for {
		raw, err := m.qmp.exec(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("qemu: query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return f.Sync()
		case "failed", "cancelled":
			err := fmt.Errorf("qemu: saving the guest's state %s: %s", st.Status, st.Error)
			if strings.Contains(st.Error, "No space left on device") || strings.Contains(st.Error, "Disk quota exceeded") {
				err = fmt.Errorf("%w (%w)", err, syscall.ENOSPC) // the caller tells a full disk apart
			}
			return err
		}
		select {
		case <-ctx.Done():
			m.qmp.exec(context.Background(), "migrate_cancel", nil) //nolint:errcheck
			return ctx.Err()
		case <-m.Done():
			return errors.New("qemu exited while saving the guest's state")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitIncoming waits for QEMU started with -incoming to have loaded the state: it is then
// paused (it was started with -S) and Start's cont runs the guest.
func (m *machine) awaitIncoming(ctx context.Context) error {
	for {
		st, err := m.Status(ctx)
		if err != nil {
			return fmt.Errorf("qemu: restore: %w", err)
		}
		switch st {
		case "paused", "running":
			return nil
		case "inmigrate", "prelaunch":
		default:
			return fmt.Errorf("qemu: restore: the VM is %s after loading its state", st)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu: restore: %w", ctx.Err())
		case <-m.Done():
			log, _ := os.ReadFile(filepath.Join(m.dir, "qemu.log"))
			return fmt.Errorf("qemu exited while loading the snapshot: %s", lastLines(log))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restore reverts the VM's overlay to the snapshot's disk and boots from its state.
func (d *Driver) Restore(ctx context.Context, spec hypervisor.Spec, dir, tag string) (hypervisor.Machine, error) {
	f, err := os.Open(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("qemu: the snapshot's state: %w", err)
	}
	defer f.Close()
	// The overlay is there if the VM had a root disk when the snapshot was taken.
	if ov := filepath.Join(spec.Dir, overlayFile); hasRoot(spec) || exists(ov) {
		if out, err := exec.CommandContext(ctx, or(d.Img, "qemu-img"), "snapshot", "-a", tag, ov).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu: revert the disk to the snapshot: %v: %s", err, out)
		}
	}
	m, err := d.boot(ctx, spec, f)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// DropSnapshot deletes the overlay's internal snapshot tag: over QMP while the VM runs
// (QEMU holds the file), else with qemu-img. A tag that is not there is no error.
func (d *Driver) DropSnapshot(ctx context.Context, spec hypervisor.Spec, running hypervisor.Machine, tag string) error {
	if m, ok := running.(*machine); ok && m.Alive() {
		for _, id := range m.writable {
			if _, err := m.qmp.exec(ctx, "blockdev-snapshot-delete-internal-sync", map[string]any{"device": id, "name": tag}); err != nil && !isNoSnapshot(err) {
				return err
			}
		}
		return nil
	}
	ov := filepath.Join(spec.Dir, overlayFile)
	if !exists(ov) {
		return nil
	}
	out, err := exec.CommandContext(ctx, or(d.Img, "qemu-img"), "snapshot", "-d", tag, ov).CombinedOutput()
	if err != nil && !isNoSnapshot(errors.New(string(out))) {
		return fmt.Errorf("qemu: delete the disk's snapshot: %v: %s", err, out)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func hasRoot(spec hypervisor.Spec) bool {
	for _, disk := range spec.Disks {
		if disk.Root && !disk.ReadOnly {
			return true
		}
	}
	return false
}

// isNoSnapshot: QEMU's words for a tag the image does not have.
func isNoSnapshot(err error) bool {
	s := err.Error()
	return containsAny(s, "not found", "Can't find", "No such")
}

// sendFD passes f to QEMU under name (QMP getfd, the descriptor in SCM_RIGHTS).
func (q *qmp) sendFD(ctx context.Context, name string, f *os.File) error {
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return errors.New("qmp: not a unix socket; cannot pass a file")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.conn.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	b, _ := json.Marshal(map[string]any{"execute": "getfd", "arguments": map[string]any{"fdname": name}})
	if _, _, err := uc.WriteMsgUnix(append(b, '\n'), syscall.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("qmp getfd: %w", err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return fmt.Errorf("qmp getfd: %w", err)
		}
		if m.Event != "" || m.QMP != nil {
			continue
		}
		if m.Error != nil {
			return fmt.Errorf("qmp getfd: %s: %s", m.Error.Class, m.Error.Desc)
		}
		return nil
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// lastLines is the end of a log, for an error message.
func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}
