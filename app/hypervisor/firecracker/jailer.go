package firecracker

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"hearth/app/hypervisor"
)

// Jailer runs firecracker through Firecracker's jailer: chroot, uid/gid drop, cgroups. Every
// file Firecracker opens is put into the jail (see prepare) and named by its path inside it.
type Jailer struct {
	Binary        string   // the jailer executable
	UID, GID      int      // what firecracker runs as
	ChrootBase    string   // default /srv/jailer
	CgroupVersion string   // "1" or "2"; "" leaves the jailer's default
	Cgroups       []string // file=value, e.g. cpu.max=50000 100000
}

// jailSocket is the API socket's path inside the jail.
const jailSocket = "/run/firecracker.socket"

func (j *Jailer) base() string {
	if j.ChrootBase != "" {
		return j.ChrootBase
	}
	return "/srv/jailer"
}

// dir is the VM's jail: <base>/<exec file name>/<id>; the chroot is its root/.
func (j *Jailer) dir(fcBinary, vmID string) string {
	return filepath.Join(j.base(), filepath.Base(fcBinary), vmID)
}

// args is the jailer command line; firecracker's own arguments follow "--".
func (j *Jailer) args(fcBinary, vmID string) []string {
	a := []string{"--id", vmID, "--exec-file", fcBinary, "--uid", strconv.Itoa(j.UID), "--gid", strconv.Itoa(j.GID),
		"--chroot-base-dir", j.base()}
	if j.CgroupVersion != "" {
		a = append(a, "--cgroup-version", j.CgroupVersion)
	}
	for _, c := range j.Cgroups {
		a = append(a, "--cgroup", c)
	}
	return append(a, "--", "--api-sock", jailSocket)
}

// prepare builds the chroot for spec and returns the spec with paths as seen inside it.
//
// Nothing outside the jail changes owner or mode: the kernel, initrd and seed an operator
// named (and may share between VMs) are hard-linked in only when the jail's uid can already
// read them and cannot write them, since a link shares the original's inode and permissions;
// otherwise they are copied in (reflinked where the filesystem can) and only the copy is
// given to the jail. The one writable file, the VM's root disk, is its private copy in its
// run directory, which the driver made for this VM alone and gave to the jail's uid.
func (j *Jailer) prepare(fcBinary string, spec hypervisor.Spec) (hypervisor.Spec, string, error) {
	root := filepath.Join(j.dir(fcBinary, spec.VMID), "root")
	if err := os.RemoveAll(j.dir(fcBinary, spec.VMID)); err != nil { // a previous boot's jail
		return spec, "", err
	}
	for _, d := range []string{root, filepath.Join(root, "run")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return spec, "", fmt.Errorf("firecracker: jail: %w", err)
		}
		if err := os.Chown(d, j.UID, j.GID); err != nil { // firecracker makes its socket in run/
			return spec, "", fmt.Errorf("firecracker: jail: %w", err)
		}
	}
	place := func(src, name string, writable bool) (string, error) {
		dst := filepath.Join(root, name)
		var err error
		if writable {
			err = j.linkOwn(src, dst, spec.Dir)
		} else {
			err = j.placeReadOnly(src, dst)
		}
		if err != nil {
			return "", fmt.Errorf("firecracker: put %s into the jail: %w", src, err)
		}
		return "/" + name, nil
	}
	jailed := spec
	var err error
	if jailed.Kernel, err = place(spec.Kernel, "vmlinux", false); err != nil {
		return spec, "", err
	}
	if spec.Initrd != "" {
		if jailed.Initrd, err = place(spec.Initrd, "initrd", false); err != nil {
			return spec, "", err
		}
	}
	jailed.Disks = nil
	for _, d := range spec.Disks {
		if d.Path, err = place(d.Path, d.ID+".img", !d.ReadOnly); err != nil {
			return spec, "", err
		}
		jailed.Disks = append(jailed.Disks, d)
	}
	return jailed, root, nil
}

// placeReadOnly puts a read-only input into the jail without touching the original.
func (j *Jailer) placeReadOnly(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if j.readOnlyFor(st) {
		if err := os.Link(src, dst); err == nil {
			return nil
		}
		// another filesystem, or links refused: copy
	}
	if err := copyFile(src, dst); err != nil {
		return err
	}
	if err := os.Chown(dst, j.UID, j.GID); err != nil {
		return err
	}
	return os.Chmod(dst, 0o400)
}

// readOnlyFor reports whether the jail's uid/gid can read the file and cannot write it (nor
// change its mode, as an owner could).
func (j *Jailer) readOnlyFor(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) == j.UID {
		return false
	}
	perm := st.Mode().Perm()
	group := int(sys.Gid) == j.GID
	readable := perm&0o004 != 0 || (group && perm&0o040 != 0)
	writable := perm&0o002 != 0 || (group && perm&0o020 != 0)
	return readable && !writable
}

// linkOwn links a writable disk into the jail. It must be one of the VM's own files in its
// run directory (the driver's private copy): an operator's file is never handed to the jail
// for writing.
func (j *Jailer) linkOwn(src, dst, runDir string) error {
	if filepath.Dir(src) != filepath.Clean(runDir) {
		return errors.New("a writable disk must be the VM's own copy in its run directory")
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	} else if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	return errors.New("the jail's chroot base and the data dir are on different filesystems; a writable disk cannot be shared between them (put HEARTH_JAILER_CHROOT on the data dir's filesystem)")
}

// copyFile copies src to a new file dst; cp --reflink=auto shares blocks where the
// filesystem can and --sparse keeps holes.
func copyFile(src, dst string) error {
	if out, err := exec.Command("cp", "--reflink=auto", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy: %v: %s", err, out)
	}
	return nil
}
