package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"hearth/app"
)

// ImageDirs are the only places a VM's kernel, initrd and root filesystem may come from.
// A VM's inputs are opened by the hypervisor the manager starts, often as root, and what a
// guest reads it can hand back (over its console, into the API): an operator token must not
// reach /etc/shadow, /proc/self/environ or the host's disk through a VM. So every input is a
// regular file under one of these directories, with links followed only as long as they
// stay inside it.
type ImageDirs []string

// within reports whether p lies lexically inside dir.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Resolve checks p and returns it with every link resolved, which is what the hypervisor
// is then given (a link swapped afterwards cannot redirect it). A path outside the
// directories is refused before anything looks at it, so the answer reveals nothing of
// the host's other files.
func (d ImageDirs) Resolve(p string) (string, error) {
	if len(d) == 0 {
		return "", errors.New("no image directories are configured (HEARTH_IMAGE_DIRS)")
	}
	p = filepath.Clean(p)
	for _, dir := range d {
		if !within(dir, p) {
			continue
		}
		realDir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("the image directory %s is missing", dir)
		}
		real, err := filepath.EvalSymlinks(p)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s does not exist", p)
		}
		if err != nil {
			return "", fmt.Errorf("%s cannot be resolved", p)
		}
		if !within(realDir, real) {
			return "", fmt.Errorf("%s links outside the image directory %s", p, dir)
		}
		st, err := os.Stat(real)
		if err != nil || !st.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a regular file", p)
		}
		return real, nil
	}
	return "", fmt.Errorf("%s is outside the image directories (%s)", p, strings.Join(d, ", "))
}

// resolveImages resolves each set input, reporting problems per field; the kernel is
// required to start (kernelRequired), not to define a VM.
func (d ImageDirs) resolveImages(kernel, initrd, rootfs *string, kernelRequired bool) error {
	fields := map[string]string{}
	for _, in := range []struct {
		field    string
		p        *string
		required bool
	}{{"kernel", kernel, kernelRequired}, {"initrd", initrd, false}, {"rootfs", rootfs, false}} {
		if *in.p == "" {
			if in.required {
				fields[in.field] = "is required to start the VM"
			}
			continue
		}
		real, err := d.Resolve(*in.p)
		if err != nil {
			fields[in.field] = err.Error()
			continue
		}
		*in.p = real
	}
	return app.Invalid(fields)
}
