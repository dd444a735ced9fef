package vm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
)

// snapshotMargin is room for device state and file system overhead beyond the guest's
// memory when the space for a snapshot is checked.
const snapshotMargin = 64 << 20

// Snapshot starts taking a snapshot of a running or paused VM and returns its record (state
// taking) at once; the guest is paused while its memory, devices and disk are saved, and
// runs again afterwards if it was running. Space under the VM's directory is checked first:
// a snapshot needs up to the guest's memory (and, under Firecracker, a copy of its disk).
func (s *Service) Snapshot(ctx context.Context, id, name string, diff bool, by app.Actor) (*app.Snapshot, error) {
	if err := app.CheckSnapshotName(name); err != nil {
		return nil, err
	}
	vm, r, p, err := s.pauser(ctx, id)
	if err != nil {
		return nil, err
	}
	sn, ok := r.m.(hypervisor.Snapshotter)
	if !ok {
		return nil, app.Errorf(app.EUNAVAILABLE, "the %s driver cannot snapshot a VM", r.driver)
	}
	if _, err := s.db.Snapshot(ctx, id, name); err == nil {
		return nil, app.Errorf(app.ECONFLICT, "%s already has a snapshot named %q", vm.Name, name)
	}
	files := s.files(id)
	if err := os.MkdirAll(files.Snapshots(), 0o700); err != nil {
		if app.NoSpace(err) {
			return nil, app.FullDataDir()
		}
		return nil, err
	}
	if err := checkSpace(files.Snapshots(), snapshotNeed(vm, files.Run(), r.driver)); err != nil {
		return nil, err
	}
	done, err := s.rt.begin(id, r, "taking snapshot "+name)
	if err != nil {
		return nil, err
	}
	snap := &app.Snapshot{VMID: id, Name: name, Kind: "full", Driver: r.driver, VCPUs: vm.VCPUs, MemoryMiB: vm.MemoryMiB}
	if diff {
		snap.Kind = "diff"
	}
	if err := s.db.StartSnapshot(ctx, snap, entry(by, app.AuditSnapshot, id, "taking snapshot "+name+" of "+vm.Name)); err != nil {
		done()
		return nil, err
	}
	s.rt.wg.Add(1)
	go func() {
		defer s.rt.wg.Done()
		defer done()
		s.take(vm, snap, sn, p, diff, by)
	}()
	return snap, nil
}

// take does the work of Snapshot and records its outcome. Nothing of a failed snapshot
// stays: its directory is written as a temporary one and renamed when complete.
func (s *Service) take(vm *app.VM, snap *app.Snapshot, sn hypervisor.Snapshotter, p hypervisor.Pauser, diff bool, by app.Actor) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	files := s.files(vm.ID)
	tmp, final := files.SnapshotTemp(snap.Name), files.Snapshot(snap.Name)
	tag := hypervisor.SnapshotTag(snap.Name)
	fail := func(err error) {
		os.RemoveAll(tmp)
		msg := err.Error()
		if app.NoSpace(err) {
			msg = "the data directory filled up while the snapshot was written (nothing of it was kept): " + msg
		}
		snap.State, snap.Error = app.SnapshotFailed, msg
		s.rt.Logger.Warn("snapshot failed", "vm", vm.ID, "snapshot", snap.Name, "error", err)
		if err := s.db.FinishSnapshot(context.Background(), snap, entry(by, app.AuditSnapshot, vm.ID, "snapshot "+snap.Name+" failed: "+msg)); err != nil {
			s.rt.Logger.Error("record a failed snapshot", "vm", vm.ID, "error", err)
		}
	}
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		fail(err)
		return
	}
	wasRunning := vm.State == app.VMRunning
	start := time.Now()
	if wasRunning {
		if err := p.Pause(ctx); err != nil {
			fail(fmt.Errorf("pause the guest: %w", err))
			return
		}
	}
	kind, err := sn.Snapshot(ctx, tmp, tag, diff)
	if wasRunning {
		if rerr := p.Resume(context.Background()); rerr != nil {
			s.rt.Logger.Error("resume after a snapshot", "vm", vm.ID, "error", rerr)
			err = errors.Join(err, fmt.Errorf("the guest could not be resumed: %w", rerr))
		}
	}
	took := time.Since(start)
	if err == nil {
		err = syncDir(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		s.dropDiskPart(vm, snap.Driver, tag)
		fail(err)
		return
	}
	snap.State, snap.Kind, snap.TookMillis, snap.SizeBytes = app.SnapshotReady, kind, took.Milliseconds(), dirSize(final)
	detail := fmt.Sprintf("snapshot %s of %s taken: %s, guest paused %d ms", snap.Name, vm.Name, app.Bytes(snap.SizeBytes), snap.TookMillis)
	if err := s.db.FinishSnapshot(context.Background(), snap, entry(by, app.AuditSnapshot, vm.ID, detail)); err != nil {
		s.rt.Logger.Error("record a snapshot", "vm", vm.ID, "error", err)
	}
}

// dropDiskPart removes what a snapshot keeps outside its directory (QEMU's internal
// snapshot of the overlay).
func (s *Service) dropDiskPart(vm *app.VM, driver, tag string) {
	rs, ok := s.rt.Drivers[driver].(hypervisor.Restorer)
	if !ok {
		return
	}
	files := s.files(vm.ID)
	spec := hypervisor.Spec{VMID: vm.ID, Name: vm.Name, Dir: files.Run(), Console: files.Console()}
	if err := rs.DropSnapshot(context.Background(), spec, s.Machine(vm.ID), tag); err != nil {
		s.rt.Logger.Warn("drop a snapshot's disk part", "vm", vm.ID, "tag", tag, "error", err)
	}
}

// Snapshots lists the VM's snapshots, oldest first.
func (s *Service) Snapshots(ctx context.Context, id string) ([]*app.Snapshot, error) {
	if _, err := s.db.VM(ctx, id); err != nil {
		return nil, err
	}
	return s.db.Snapshots(ctx, id)
}

// SnapshotOf returns one of the VM's snapshots.
func (s *Service) SnapshotOf(ctx context.Context, id, name string) (*app.Snapshot, error) {
	if _, err := s.db.VM(ctx, id); err != nil {
		return nil, err
	}
	return s.db.Snapshot(ctx, id, name)
}

// DeleteSnapshot removes a snapshot: its record, its directory and its disk part.
func (s *Service) DeleteSnapshot(ctx context.Context, id, name string, by app.Actor) error {
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return err
	}
	if err := s.own(vm); err != nil { // its files are on its node
		return err
	}
	snap, err := s.db.Snapshot(ctx, id, name)
	if err != nil {
		return err
	}
	if err := s.db.DeleteSnapshot(ctx, id, name, entry(by, app.AuditSnapshotDrop, id, "deleted snapshot "+name+" of "+vm.Name)); err != nil {
		return err
	}
	if s.rt != nil {
		s.dropDiskPart(vm, snap.Driver, hypervisor.SnapshotTag(name))
	}
	if err := os.RemoveAll(s.files(id).Snapshot(name)); err != nil {
		return fmt.Errorf("snapshot deleted, but its files remain: %w", err)
	}
	return nil
}

// Restore brings the VM back to one of its snapshots: a running or paused VM is stopped
// first (killed: its present state is given up), then its hypervisor starts from the
// snapshot and the guest continues where it was when it was taken. afterRestore, when set,
// runs once the guest runs (the manager steps the guest's clock through its agent).
func (s *Service) Restore(ctx context.Context, id, name string, by app.Actor) (*app.VM, error) {
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
	snap, err := s.db.Snapshot(ctx, id, name)
	if err != nil {
		return nil, err
	}
	if snap.State != app.SnapshotReady {
		return nil, app.Errorf(app.ECONFLICT, "snapshot %s is %s, not ready", name, snap.State)
	}
	dname, d, err := s.driver(vm)
	if err != nil {
		return nil, err
	}
	rs, ok := d.(hypervisor.Restorer)
	if !ok || dname != snap.Driver {
		return nil, app.Errorf(app.EINVALID, "snapshot %s was taken under %s; %s runs under %s now and cannot restore it", name, snap.Driver, vm.Name, dname)
	}
	if vm.VCPUs != snap.VCPUs || vm.MemoryMiB != snap.MemoryMiB {
		return nil, app.Errorf(app.EINVALID, "snapshot %s is of a VM with %d vCPUs and %d MiB; %s now has %d and %d MiB: set them back to restore it",
			name, snap.VCPUs, snap.MemoryMiB, vm.Name, vm.VCPUs, vm.MemoryMiB)
	}
	if vm.State.Live() || vm.State == app.VMStopping {
		if err := s.killForRestore(ctx, vm, name, by); err != nil {
			return nil, err
		}
	}
	dir := s.files(id).Snapshot(name)
	tag := hypervisor.SnapshotTag(name)
	return s.launch(ctx, id, by, app.AuditRestore, "restoring "+vm.Name+" from snapshot "+name,
		func(bootCtx context.Context, spec hypervisor.Spec) (hypervisor.Machine, error) {
			return rs.Restore(bootCtx, spec, dir, tag)
		})
}

// killForRestore ends the VM's present run at once and waits until it is recorded stopped.
func (s *Service) killForRestore(ctx context.Context, vm *app.VM, name string, by app.Actor) error {
	s.rt.mu.Lock()
	r := s.rt.running[vm.ID]
	if r != nil && r.op != "" {
		s.rt.mu.Unlock()
		return app.Errorf(app.ECONFLICT, "VM %s is busy: %s", vm.Name, r.op)
	}
	if r != nil {
		r.stopping, r.stopAt, r.restore, r.by = true, time.Now(), true, by
	}
	s.rt.mu.Unlock()
	if r != nil {
		if k, ok := r.m.(interface{ Kill() }); ok {
			k.Kill()
		} else {
			r.m.Stop(ctx, 0) //nolint:errcheck
		}
		select {
		case <-r.m.Done():
		case <-time.After(30 * time.Second):
			return app.Errorf(app.EINVALID, "%s did not stop within 30 s; snapshot %s was not restored", vm.Name, name)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, err := s.db.VM(ctx, vm.ID)
		if err != nil {
			return err
		}
		if !cur.State.Live() && cur.State != app.VMStopping {
			return nil
		}
		s.rt.mu.Lock()
		still := s.rt.running[vm.ID] != nil
		s.rt.mu.Unlock()
		if time.Now().After(deadline) || (r == nil && !still) {
			return app.Errorf(app.ECONFLICT, "%s is still recorded %s; snapshot %s was not restored", vm.Name, cur.State, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshotNeed is how much space a snapshot of vm may take: its memory, a margin, and
// under Firecracker the allocated size of its disk copies.
func snapshotNeed(vm *app.VM, runDir, driver string) int64 {
	need := int64(vm.MemoryMiB)<<20 + snapshotMargin
	if driver == "firecracker" {
		matches, _ := filepath.Glob(filepath.Join(runDir, "*.img"))
		for _, m := range matches {
			need += allocated(m)
		}
	}
	return need
}

// checkSpace refuses a snapshot that may not fit under dir.
func checkSpace(dir string, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("check the space for a snapshot: %w", err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return app.Errorf(app.EFULL, "not enough space for the snapshot: it needs up to %s (the guest's memory and devices, and its disk), and %s are free under %s; free space or delete snapshots (nothing was written)",
			app.Bytes(need), app.Bytes(free), dir)
	}
	return nil
}

// allocated is the space a file takes on disk (holes do not count).
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// dirSize is the space the files under dir take on disk.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error { //nolint:errcheck
		if err == nil && e.Type().IsRegular() {
			n += allocated(p)
		}
		return nil
	})
	return n
}

// syncDir flushes the files of dir, and dir itself, to disk.
func syncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
