package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"hearth/app"
)

// OCI import steps, in order.
const (
	StepPull    = "pull"    // the manifest and config, from the registry or the archive
	StepFlatten = "flatten" // the layers, in order, whiteouts honoured, into a tree
)

// OCISteps lists an OCI import's steps in order.
var OCISteps = []string{StepPull, StepFlatten, StepCheck, StepKernel, StepFilesystem, StepVmlinux, StepInspect, StepChecksum}

// OCI is an OCI (or Docker) image to make an image of.
type OCI struct {
	Ref     string // a registry reference: debian:bookworm, registry.example/app@sha256:…
	Archive string // or a file: a `docker save` tarball, an OCI layout (directory or tar)
	// KernelFrom is an image directory whose kernel (and initrd) VMs of this image boot
	// when the image has no kernel in /boot, as container images seldom do.
	KernelFrom string
	Size       string // the root filesystem's size; default 2G, or more if the files need it
	Arch       string // default this host's: amd64, arm64
	// MaxBytes bounds the files' total size (default 32 GiB): a registry or archive
	// cannot fill the disk.
	MaxBytes int64
}

// Reference is how the image says what it was made from.
func (o OCI) Reference() string {
	if o.Ref != "" {
		return o.Ref
	}
	return "archive " + o.Archive
}

// ImportOCI makes an image in dir (which must not exist yet) of an OCI image: its layers
// are flattened in order into a tree with whiteouts honoured, checked to hold an init and
// cloud-init, and written into an ext4 root filesystem by mkfs.ext4 -d (no loop device,
// no mount); the kernel comes from the image's /boot, else from KernelFrom. Needs root:
// the files keep their owners. On failure dir is removed.
func ImportOCI(ctx context.Context, src OCI, dir string, step, logLine func(string)) (files []app.ImageFile, facts Facts, digest string, err error) {
	if step == nil {
		step = func(string) {}
	}
	if logLine == nil {
		logLine = func(string) {}
	}
	if (src.Ref == "") == (src.Archive == "") {
		return nil, Facts{}, "", errors.New("give a registry reference or an archive, one of them")
	}
	if src.Size != "" && !sizeRE.MatchString(src.Size) {
		return nil, Facts{}, "", fmt.Errorf("size %q: want a size such as 2G or 1500M", src.Size)
	}
	if src.Arch == "" {
		src.Arch = runtime.GOARCH
	}
	if src.MaxBytes == 0 {
		src.MaxBytes = 32 << 30
	}
	if os.Geteuid() != 0 {
		return nil, Facts{}, "", errors.New("importing an OCI image needs root: its files must keep their owners (root's, and the packages' users')")
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, Facts{}, "", fmt.Errorf("%s exists already", dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, Facts{}, "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()

	step(StepPull)
	img, err := openOCI(ctx, src, dir)
	if err != nil {
		return nil, Facts{}, "", &StepError{StepPull, err}
	}
	if d, err := img.Digest(); err == nil {
		digest = d.String()
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, Facts{}, "", &StepError{StepPull, fmt.Errorf("the image's config: %w", err)}
	}
	if cfg.OS != "" && (cfg.OS != "linux" || (cfg.Architecture != "" && cfg.Architecture != src.Arch)) {
		return nil, Facts{}, "", &StepError{StepPull, fmt.Errorf("the image is for %s/%s; VMs here are linux/%s", cfg.OS, cfg.Architecture, src.Arch)}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, Facts{}, "", &StepError{StepPull, fmt.Errorf("the image's layers: %w", err)}
	}
	logLine(fmt.Sprintf("%s: %d layers, %s/%s, %s", src.Reference(), len(layers), cfg.OS, cfg.Architecture, digest))

	step(StepFlatten)
	treeDir := filepath.Join(dir, ".tree")
	t, err := newTree(treeDir, src.MaxBytes)
	if err != nil {
		return nil, Facts{}, "", &StepError{StepFlatten, err}
	}
	defer t.close()
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return nil, Facts{}, "", &StepError{StepFlatten, fmt.Errorf("cancelled: %w", err)}
		}
		d, _ := l.Digest()
		size, _ := l.Size()
		logLine(fmt.Sprintf("layer %d/%d %s (%.1f MiB)", i+1, len(layers), short(d.String()), float64(size)/(1<<20)))
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, Facts{}, "", &StepError{StepFlatten, fmt.Errorf("layer %d: %w", i+1, err)}
		}
		err = t.apply(rc)
		rc.Close()
		if err != nil {
			return nil, Facts{}, "", &StepError{StepFlatten, fmt.Errorf("layer %d: %w", i+1, err)}
		}
	}
	t.settle()
	logLine(fmt.Sprintf("%d entries, %.0f MiB of files", t.files, float64(t.used)/(1<<20)))

	step(StepCheck)
	if err := t.bootable(); err != nil {
		return nil, Facts{}, "", &StepError{StepCheck, err}
	}

	step(StepKernel)
	if err := t.kernel(ctx, dir, src.KernelFrom, logLine); err != nil {
		return nil, Facts{}, "", &StepError{StepKernel, err}
	}

	step(StepFilesystem)
	size := src.Size
	if size == "" {
		// Room for what the guest writes (cloud-init, the agent, logs) besides the files.
		need := (t.used*5/4 + 768<<20) >> 20
		size = fmt.Sprintf("%dM", max(need, 2048))
	}
	rootfs := filepath.Join(dir, RootfsFile)
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-d", treeDir, "-L", "rootfs", rootfs, size).CombinedOutput()
	if err != nil {
		return nil, Facts{}, "", &StepError{StepFilesystem, fmt.Errorf("mkfs.ext4 -d: %v: %s", err, strings.TrimSpace(string(out)))}
	}
	t.close()
	if err := os.RemoveAll(treeDir); err != nil {
		return nil, Facts{}, "", &StepError{StepFilesystem, err}
	}

	step(StepVmlinux)
	_, haveVmlinux := os.Stat(filepath.Join(dir, VmlinuxFile))
	if _, err := os.Stat(filepath.Join(dir, KernelFile)); err == nil && haveVmlinux != nil { // a borrowed kernel may come with its own
		if err := ExtractVmlinux(filepath.Join(dir, KernelFile), filepath.Join(dir, VmlinuxFile)); err != nil {
			return nil, Facts{}, "", &StepError{StepVmlinux, err}
		}
	}
	step(StepInspect)
	if facts, err = Inspect(ctx, rootfs); err != nil {
		return nil, Facts{}, "", &StepError{StepInspect, err}
	}
	step(StepChecksum)
	if files, err = Describe(dir); err != nil {
		return nil, Facts{}, "", &StepError{StepChecksum, err}
	}
	return files, facts, digest, nil
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// openOCI finds the image: in the registry, or in the archive (a layout tar is unpacked
// into scratch, a directory under dir, first).
func openOCI(ctx context.Context, src OCI, scratch string) (v1.Image, error) {
	platform := v1.Platform{OS: "linux", Architecture: src.Arch}
	if src.Ref != "" {
		ref, err := name.ParseReference(src.Ref)
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w", src.Ref, err)
		}
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(platform))
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", src.Ref, err)
		}
		return img, nil
	}
	st, err := os.Stat(src.Archive)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return fromLayout(src.Archive, platform)
	}
	entries, err := tarNames(src.Archive)
	if err != nil {
		return nil, err
	}
	switch {
	case entries["manifest.json"]:
		img, err := tarball.ImageFromPath(src.Archive, nil)
		if err != nil {
			return nil, fmt.Errorf("%s (docker save): %w", src.Archive, err)
		}
		return img, nil
	case entries["oci-layout"]:
		unpacked := filepath.Join(scratch, ".layout")
		if err := untarLayout(src.Archive, unpacked); err != nil {
			return nil, err
		}
		return fromLayout(unpacked, platform)
	}
	return nil, fmt.Errorf("%s is neither a docker save tarball (no manifest.json) nor an OCI layout (no oci-layout)", src.Archive)
}

// tarNames lists the entries at the top of a tar file.
func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			if len(names) == 0 {
				return nil, fmt.Errorf("%s is not a tar archive (%s)", p, describeFile(p))
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		names[clean(h.Name)] = true
	}
}

func describeFile(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	return describe(head[:n])
}

// untarLayout unpacks an OCI layout's files (oci-layout, index.json, blobs/…) and nothing
// else: names are cleaned, only regular files and directories are made.
func untarLayout(archive, dst string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		rel := clean(h.Name)
		if rel == "" || (rel != "oci-layout" && rel != "index.json" && rel != "blobs" && !strings.HasPrefix(rel, "blobs/")) {
			continue
		}
		p := filepath.Join(dst, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o750); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// fromLayout picks the platform's image of an OCI layout (the only one, when it says no
// platform).
func fromLayout(dir string, platform v1.Platform) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI layout: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return pick(idx, platform, 0)
}

func pick(idx v1.ImageIndex, platform v1.Platform, depth int) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var seen []string
	for _, d := range m.Manifests {
		if d.Platform != nil {
			seen = append(seen, d.Platform.OS+"/"+d.Platform.Architecture)
		}
		fits := d.Platform == nil || (d.Platform.OS == platform.OS && d.Platform.Architecture == platform.Architecture)
		switch {
		case !fits:
		case d.MediaType.IsImage():
			return idx.Image(d.Digest)
		case d.MediaType.IsIndex() && depth < 2:
			inner, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := pick(inner, platform, depth+1); err == nil {
				return img, nil
			}
		}
	}
	return nil, fmt.Errorf("no %s/%s image in it (it has: %s)", platform.OS, platform.Architecture, strings.Join(seen, ", "))
}

// bootable refuses a tree VMs could not boot or register from, saying what is missing.
func (t *tree) bootable() error {
	var missing []string
	if f, ok := t.regular("sbin/init"); ok {
		f.Close()
	} else {
		missing = append(missing, "an init (/sbin/init: install systemd-sysv, or sysvinit-core and openrc)")
	}
	if f, ok := t.regular("usr/bin/cloud-init"); ok {
		f.Close()
	} else {
		missing = append(missing, "cloud-init (/usr/bin/cloud-init: install cloud-init)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the image has no %s; a VM made of it could not boot or register itself", strings.Join(missing, " and no "))
	}
	return nil
}

// kernel puts the kernel (and initrd) VMs boot into dir: the last /boot/vmlinuz-* of the
// tree by name (with its initrd.img-*), else kernelFrom's.
func (t *tree) kernel(ctx context.Context, dir, kernelFrom string, logLine func(string)) error {
	var kernels []string
	if bfd, err := t.open("boot", unix.O_RDONLY|unix.O_DIRECTORY); err == nil {
		names, _ := readNames(bfd)
		unix.Close(bfd)
		for _, n := range names {
			if strings.HasPrefix(n, "vmlinuz-") {
				kernels = append(kernels, n)
			}
		}
	}
	sort.Strings(kernels)
	if len(kernels) > 0 {
		k := kernels[len(kernels)-1]
		if err := t.copyOut("boot/"+k, filepath.Join(dir, KernelFile)); err != nil {
			return err
		}
		ver := strings.TrimPrefix(k, "vmlinuz-")
		if err := t.copyOut("boot/initrd.img-"+ver, filepath.Join(dir, InitrdFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		logLine("kernel " + k + " from the image's /boot")
		return nil
	}
	if kernelFrom == "" {
		return errors.New("the image has no kernel in /boot: name an image whose kernel its VMs boot (--kernel-from IMAGE, \"kernel_from\")")
	}
	copied := false
	for _, n := range []string{KernelFile, VmlinuxFile, InitrdFile} {
		err := copyFile(ctx, filepath.Join(kernelFrom, n), filepath.Join(dir, n))
		if err == nil {
			copied = copied || n != InitrdFile
			continue
		}
		if _, serr := os.Stat(filepath.Join(kernelFrom, n)); serr == nil {
			return err
		}
	}
	if !copied {
		return fmt.Errorf("%s holds no kernel", kernelFrom)
	}
	logLine("kernel from " + kernelFrom)
	return nil
}

// copyOut copies rel, followed inside the tree, to dst.
func (t *tree) copyOut(rel, dst string) error {
	f, ok := t.regular(rel)
	if !ok {
		return fmt.Errorf("%s: %w", rel, os.ErrNotExist)
	}
	defer f.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, f)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Check refuses, field by field, what cannot be imported, before any work: neither or both
// of a reference and an archive, a reference that does not parse, a size that is not one;
// and a manager that is not root.
func (o OCI) Check() error {
	fields := map[string]string{}
	switch {
	case o.Ref == "" && o.Archive == "":
		fields["oci"] = "give a registry reference (debian:bookworm, registry.example/app:1) or an archive"
	case o.Ref != "" && o.Archive != "":
		fields["oci"] = "give a registry reference or an archive, not both"
	case o.Ref != "":
		if _, err := name.ParseReference(o.Ref); err != nil {
			fields["oci"] = "is not an image reference: " + err.Error()
		}
	}
	if o.Size != "" && !sizeRE.MatchString(o.Size) {
		fields["size"] = "must be a size such as 2G or 1500M"
	}
	if err := app.Invalid(fields); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return app.Errorf(app.EUNAVAILABLE, "importing an OCI image needs the manager to run as root: the image's files must keep their owners")
	}
	return nil
}
