package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"hearth/app"
)

// Import steps, in order.
const (
	StepCheck   = "check"   // what the files are
	StepCopy    = "copy"    // into the image's directory
	StepInspect = "inspect" // which init, whether cloud-init is there
)

// ImportSteps lists the import's steps in order.
var ImportSteps = []string{StepCheck, StepCopy, StepVmlinux, StepInspect, StepChecksum}

// Files are the files an operator imports an image from.
type Files struct {
	Kernel string // bzImage or ELF vmlinux; required
	Initrd string // optional
	Rootfs string // ext4; required
}

// Facts are what an image's root filesystem says of itself.
type Facts struct {
	Init      string // app.InitSystemd, app.InitOpenRC, app.InitOther; "" when there is no init
	CloudInit bool
}

// Import copies files into dir (which must not exist yet) as an image: the kernel is
// checked to be a bzImage or an ELF kernel and the root filesystem to be ext4, anything else
// is refused with what it is; the uncompressed kernel is extracted from a bzImage; the root
// filesystem is inspected without mounting it. On failure dir is removed.
func Import(ctx context.Context, src Files, dir string, step func(string)) (files []app.ImageFile, facts Facts, err error) {
	if step == nil {
		step = func(string) {}
	}
	step(StepCheck)
	kind, err := KernelKind(src.Kernel)
	if err != nil {
		return nil, Facts{}, &StepError{StepCheck, err}
	}
	if err := CheckRootfs(src.Rootfs); err != nil {
		return nil, Facts{}, &StepError{StepCheck, err}
	}
	if src.Initrd != "" {
		if st, err := os.Stat(src.Initrd); err != nil || !st.Mode().IsRegular() {
			return nil, Facts{}, &StepError{StepCheck, fmt.Errorf("%s is not a regular file", src.Initrd)}
		}
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, Facts{}, fmt.Errorf("%s exists already", dir)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	step(StepCopy)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, Facts{}, &StepError{StepCopy, err}
	}
	kernelName := KernelFile
	if kind == "elf" {
		kernelName = VmlinuxFile
	}
	for from, name := range map[string]string{src.Kernel: kernelName, src.Rootfs: RootfsFile, src.Initrd: InitrdFile} {
		if from == "" {
			continue
		}
		if err := copyFile(ctx, from, filepath.Join(dir, name)); err != nil {
			return nil, Facts{}, &StepError{StepCopy, err}
		}
	}
	step(StepVmlinux)
	if kind == "bzImage" {
		if err := ExtractVmlinux(filepath.Join(dir, KernelFile), filepath.Join(dir, VmlinuxFile)); err != nil {
			return nil, Facts{}, &StepError{StepVmlinux, err}
		}
	}
	step(StepInspect)
	if facts, err = Inspect(ctx, filepath.Join(dir, RootfsFile)); err != nil {
		return nil, Facts{}, &StepError{StepInspect, err}
	}
	step(StepChecksum)
	if files, err = Describe(dir); err != nil {
		return nil, Facts{}, &StepError{StepChecksum, err}
	}
	return files, facts, nil
}

// copyFile copies src to a new file dst: reflinked where the filesystem can, holes kept.
func copyFile(ctx context.Context, src, dst string) error {
	if out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy %s: %v: %s", src, err, bytes.TrimSpace(out))
	}
	return nil
}

// CheckRootfs refuses anything but an ext2/3/4 filesystem image (magic 0xEF53 in the
// superblock at 1024), naming what it is instead.
func CheckRootfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	head := make([]byte, 2048)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if n >= 1082 && binary.LittleEndian.Uint16(head[1080:]) == 0xEF53 {
		return nil
	}
	what := describe(head)
	for _, k := range []struct{ magic, name string }{{"hsqs", "a squashfs image"}, {"QFI\xfb", "a qcow2 image (convert it: qemu-img convert -O raw)"}} {
		if bytes.HasPrefix(head, []byte(k.magic)) {
			what = k.name
		}
	}
	return fmt.Errorf("%s is not an ext4 filesystem (%s)", path, what)
}

// Inspect reads, without mounting, which init a root filesystem runs and whether
// cloud-init is installed (debugfs, from e2fsprogs).
func Inspect(ctx context.Context, rootfs string) (Facts, error) {
	exists := func(p string) (string, bool, error) {
		out, err := exec.CommandContext(ctx, "debugfs", "-R", "stat "+p, rootfs).CombinedOutput()
		s := string(out)
		if strings.Contains(s, "File not found") {
			return "", false, nil
		}
		if err != nil || !strings.Contains(s, "Inode:") {
			return "", false, fmt.Errorf("debugfs on %s: %v: %s", rootfs, err, strings.TrimSpace(s))
		}
		return s, true, nil
	}
	var f Facts
	if _, ok, err := exists("/usr/bin/cloud-init"); err != nil {
		return Facts{}, err
	} else {
		f.CloudInit = ok
	}
	init, ok, err := exists("/sbin/init")
	if err != nil {
		return Facts{}, err
	}
	_, openrc, err := exists("/sbin/openrc-run")
	if err != nil {
		return Facts{}, err
	}
	switch {
	case ok && strings.Contains(init, "systemd"):
		f.Init = app.InitSystemd
	case openrc:
		f.Init = app.InitOpenRC
	case ok:
		f.Init = app.InitOther
	}
	return f, nil
}
