package firecracker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"hearth/app/hypervisor"
)

// Jailer runs firecracker through Firecracker's jailer: chroot, uid/gid drop, cgroups. Every
// file Firecracker opens is hard-linked (or copied, across filesystems) into the jail and
// named by its path inside it.
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
func (j *Jailer) prepare(fcBinary string, spec hypervisor.Spec) (hypervisor.Spec, string, error) {
	root := filepath.Join(j.dir(fcBinary, spec.VMID), "root")
	if err := os.RemoveAll(j.dir(fcBinary, spec.VMID)); err != nil { // a previous boot's jail
		return spec, "", err
	}
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o750); err != nil {
		return spec, "", fmt.Errorf("firecracker: jail: %w", err)
	}
	place := func(src, name string) (string, error) {
		dst := filepath.Join(root, name)
		if err := linkOrCopy(src, dst); err != nil {
			return "", fmt.Errorf("firecracker: put %s into the jail: %w", src, err)
		}
		return "/" + name, nil
	}
	jailed := spec
	var err error
	if jailed.Kernel, err = place(spec.Kernel, "vmlinux"); err != nil {
		return spec, "", err
	}
	if spec.Initrd != "" {
		if jailed.Initrd, err = place(spec.Initrd, "initrd"); err != nil {
			return spec, "", err
		}
	}
	jailed.Disks = nil
	for _, d := range spec.Disks {
		name := d.ID + ".img"
		if d.Path, err = place(d.Path, name); err != nil {
			return spec, "", err
		}
		jailed.Disks = append(jailed.Disks, d)
	}
	return jailed, root, chownTree(root, j.UID, j.GID)
}

// linkOrCopy hard-links src to dst (same filesystem), or copies it.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	} else if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func chownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
