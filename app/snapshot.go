package app

import (
	"regexp"
	"time"
)

// Snapshot is a VM's saved state: its guest's memory and devices, and its disk at that
// moment, under its directory (VMFiles.Snapshot). The row is also the job that takes it:
// SnapshotTaking until the files are complete, then SnapshotReady (or SnapshotFailed with
// Error, and no files).
type Snapshot struct {
	VMID  string
	Name  string
	State string // SnapshotTaking, SnapshotReady, SnapshotFailed
	// Kind is "full", or "diff" (Firecracker, dirty pages since the VM's last snapshot).
	Kind   string
	Driver string // the hypervisor that took it; only it can restore it
	// What the VM was when taken: a restore needs the same shape (devices, memory size).
	VCPUs     int
	MemoryMiB int
	SizeBytes int64 // the files under the snapshot's directory, and the disk's share
	// TookMillis is how long the guest was paused for it.
	TookMillis int64
	Error      string
	CreatedAt  time.Time
	FinishedAt time.Time // zero while taking
}

// Snapshot states.
const (
	SnapshotTaking = "taking"
	SnapshotReady  = "ready"
	SnapshotFailed = "failed"
)

var snapshotName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckSnapshotName refuses names that would not make a plain directory name.
func CheckSnapshotName(name string) error {
	if !snapshotName.MatchString(name) || name == "." || name == ".." {
		return Errorf(EINVALID, "a snapshot name is 1–63 characters of a–z, 0–9, '.', '_' and '-', starting with a letter or digit; %q is not", name)
	}
	return nil
}
