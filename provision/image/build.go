// Package image makes what VMs boot from, knowing nothing of the manager's use cases: it
// builds images from Debian's packages (mmdebstrap, build.sh), imports kernels and root
// filesystems from files, flattens OCI images into ext4, extracts the uncompressed kernel
// Firecracker needs, and names and checksums an image's files. app/image records images
// and runs these as jobs.
package image

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"hearth/app"
)

// The files of an image's directory.
const (
	KernelFile  = "vmlinuz"     // bzImage
	VmlinuxFile = "vmlinux"     // the same kernel, uncompressed, for Firecracker
	InitrdFile  = "initrd.img"  // optional
	RootfsFile  = "rootfs.ext4" // the root filesystem
)

//go:embed build.sh
var buildScript []byte

// Build steps, in order.
const (
	StepBootstrap  = "bootstrap"  // mmdebstrap: the release's packages, hooks
	StepKernel     = "kernel"     // the kernel and initrd out of the tree
	StepFilesystem = "filesystem" // mkfs.ext4 -d
	StepVmlinux    = "vmlinux"    // the uncompressed kernel
	StepChecksum   = "checksum"   // sizes and sha256s
)

// BuildSteps lists the build's steps in order.
var BuildSteps = []string{StepBootstrap, StepKernel, StepFilesystem, StepVmlinux, StepChecksum}

// Spec is what to build.
type Spec struct {
	Release string // a Debian release; default bookworm
	Init    string // app.InitSystemd (default) or app.InitOpenRC
	Size    string // the root filesystem's size: 1G, 2G, 1500M; default 2G
	Mirror  string // a Debian mirror URL; "" for mmdebstrap's default
}

var (
	releaseRE = regexp.MustCompile(`^[a-z]{3,20}$`)
	sizeRE    = regexp.MustCompile(`^[1-9][0-9]{0,5}[MG]$`)
	mirrorRE  = regexp.MustCompile(`^https?://[A-Za-z0-9.:/_~-]+$`)
)

// Normalize fills the defaults and checks each field.
func (s *Spec) Normalize() error {
	if s.Release == "" {
		s.Release = "bookworm"
	}
	if s.Init == "" {
		s.Init = app.InitSystemd
	}
	if s.Size == "" {
		s.Size = "2G"
	}
	fields := map[string]string{}
	if !releaseRE.MatchString(s.Release) {
		fields["release"] = "must be a Debian release name such as bookworm"
	}
	if s.Init != app.InitSystemd && s.Init != app.InitOpenRC {
		fields["init"] = "must be systemd or openrc"
	}
	if !sizeRE.MatchString(s.Size) {
		fields["size"] = "must be a size such as 2G or 1500M"
	} else if mib := sizeMiB(s.Size); mib < 768 || mib > 64<<10 {
		fields["size"] = "must be between 768M and 64G"
	}
	if s.Mirror != "" && !mirrorRE.MatchString(s.Mirror) {
		fields["mirror"] = "must be an http(s) URL"
	}
	return app.Invalid(fields)
}

func sizeMiB(s string) int {
	var n int
	fmt.Sscanf(s[:len(s)-1], "%d", &n)
	if strings.HasSuffix(s, "G") {
		return n << 10
	}
	return n
}

// Reference is how the image says what it was built from.
func (s Spec) Reference() string { return "debian " + s.Release + " " + s.Init + " " + s.Size }

// Recipe identifies what Build would make of spec: the build script and the spec. Caches
// of built images key on it.
func Recipe(spec Spec) string {
	h := sha256.New()
	h.Write(buildScript)
	fmt.Fprintf(h, "\x00%s\x00%s\x00%s\x00%s", spec.Release, spec.Init, spec.Size, spec.Mirror)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// StepError is a failure at one step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Build builds spec into dir, which must not exist yet, calling step as each step starts
// and logLine with each line the tools print. On any failure, or when ctx ends, dir is
// removed: nothing half-made is left to boot from.
func Build(ctx context.Context, spec Spec, dir string, step func(string), logLine func(string)) (files []app.ImageFile, err error) {
	if err := spec.Normalize(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("%s exists already", dir)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if step == nil {
		step = func(string) {}
	}
	if logLine == nil {
		logLine = func(string) {}
	}
	current := StepBootstrap
	step(current)
	script, err := os.CreateTemp("", "hearth-build-*.sh")
	if err != nil {
		return nil, &StepError{current, err}
	}
	defer os.Remove(script.Name())
	script.Write(buildScript)
	script.Close()
	cmd := exec.CommandContext(ctx, "sh", script.Name(), spec.Init, spec.Release, spec.Size, dir, spec.Mirror)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, &StepError{current, err}
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, &StepError{current, fmt.Errorf("start the build script: %w", err)}
	}
	var last []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := app.CleanLine(sc.Text(), 512)
		if name, ok := strings.CutPrefix(line, "==> step "); ok {
			if name != current {
				current = name
				step(current)
			}
			continue
		}
		logLine(line)
		last = append(last, line)
		if len(last) > 5 {
			last = last[1:]
		}
	}
	io.Copy(io.Discard, out) //nolint:errcheck // a line longer than the buffer: drain the rest
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, &StepError{current, fmt.Errorf("cancelled: %w", ctx.Err())}
		}
		why := strings.Join(last, " | ")
		if why == "" {
			why = "no output"
		}
		if current == StepBootstrap && os.Geteuid() != 0 {
			why += " (building needs root, or a host where mmdebstrap's unshare mode works)"
		}
		return nil, &StepError{current, fmt.Errorf("%v: %s", err, why)}
	}
	step(StepVmlinux)
	if err := ExtractVmlinux(filepath.Join(dir, KernelFile), filepath.Join(dir, VmlinuxFile)); err != nil {
		return nil, &StepError{StepVmlinux, err}
	}
	step(StepChecksum)
	files, err = Describe(dir)
	if err != nil {
		return nil, &StepError{StepChecksum, err}
	}
	return files, nil
}

// Describe sizes and checksums the image files in dir.
func Describe(dir string) ([]app.ImageFile, error) {
	var files []app.ImageFile
	for _, name := range []string{KernelFile, VmlinuxFile, InitrdFile, RootfsFile} {
		p := filepath.Join(dir, name)
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("checksum %s: %w", p, err)
		}
		files = append(files, app.ImageFile{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no image files", dir)
	}
	return files, nil
}
