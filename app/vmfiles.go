package app

import "path/filepath"

// VMFiles names every path of a VM's directory in the data dir, so that no other code
// spells them (lima's store/filenames is the model):
//
//	<data dir>/vms/<id>/          Dir
//	    seed.iso                  Seed: a seed an earlier manager wrote whole at create
//	                              time (adopted into the record at its next use)
//	    .seed-*                   seeds being written (litter after a crash)
//	    run/                      Run: what the hypervisor makes while the VM runs
//	        seed.iso              RunSeed: the cloud-init NoCloud seed, rendered at start,
//	                              removed at stop
//	        console.log           Console: the serial console
//	        <driver's own files>  sockets, FIFOs, disk copies (<name>.tmp while made)
//	    snapshots/<name>/         Snapshot: a saved guest (memory, devices, disk copy
//	                              where the disk is not kept inside its qcow2)
//	    snapshots/.<name>.tmp/    a snapshot being taken (removed if it fails)
type VMFiles struct {
	Dir string
}

// VMsDir holds every VM's directory.
func VMsDir(dataDir string) string { return filepath.Join(dataDir, "vms") }

// FilesOf is the VM's directory in dataDir.
func FilesOf(dataDir, vmID string) VMFiles {
	return VMFiles{Dir: filepath.Join(VMsDir(dataDir), vmID)}
}

// Seed is the VM's cloud-init seed image.
func (f VMFiles) Seed() string { return filepath.Join(f.Dir, "seed.iso") }

// RunSeed is the seed a provisioned VM boots with, rendered when it starts.
func (f VMFiles) RunSeed() string { return filepath.Join(f.Run(), "seed.iso") }

// Run is the hypervisor's directory for the VM: sockets, logs, FIFOs, disk copies.
func (f VMFiles) Run() string { return filepath.Join(f.Dir, "run") }

// Console is the guest's serial console log.
func (f VMFiles) Console() string { return filepath.Join(f.Run(), "console.log") }

// Snapshots holds the VM's snapshots, one directory each.
func (f VMFiles) Snapshots() string { return filepath.Join(f.Dir, "snapshots") }

// Snapshot is the directory of the VM's snapshot name.
func (f VMFiles) Snapshot(name string) string { return filepath.Join(f.Snapshots(), name) }

// SnapshotTemp is where snapshot name is written before it is complete.
func (f VMFiles) SnapshotTemp(name string) string {
	return filepath.Join(f.Snapshots(), "."+name+".tmp")
}
