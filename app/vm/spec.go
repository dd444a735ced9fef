package vm

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"hearth/app"
)

// Limits on a VM's definition. Sizes beyond these are typos, not plans.
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 256
	MaxVCPUs         = 64
	MinMemoryMiB     = 64
	MaxMemoryMiB     = 1 << 20 // 1 TiB
	MaxBootArgs      = 2048
	MaxPath          = 4096
)

// nameRE is a DNS label: the name becomes the guest's hostname.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Normalize fills defaults into spec and checks every field, returning an EINVALID error
// with a message per bad field.
func Normalize(spec *app.VMSpec) error {
	if spec.VCPUs == 0 {
		spec.VCPUs = DefaultVCPUs
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = DefaultMemoryMiB
	}
	fields := map[string]string{}
	switch {
	case spec.Name == "":
		fields["name"] = "is required"
	case !nameRE.MatchString(spec.Name):
		fields["name"] = "must be 1–63 lowercase letters, digits or hyphens, not starting or ending with a hyphen (it becomes the guest's hostname)"
	}
	if spec.VCPUs < 1 || spec.VCPUs > MaxVCPUs {
		fields["vcpus"] = fmt.Sprintf("must be between 1 and %d", MaxVCPUs)
	}
	if spec.MemoryMiB < MinMemoryMiB || spec.MemoryMiB > MaxMemoryMiB {
		fields["memory_mib"] = fmt.Sprintf("must be between %d and %d", MinMemoryMiB, MaxMemoryMiB)
	}
	for field, p := range map[string]string{"kernel": spec.Kernel, "initrd": spec.Initrd, "rootfs": spec.Rootfs} {
		if msg := checkPath(p); msg != "" {
			fields[field] = msg
		}
	}
	switch spec.Hypervisor {
	case "", "firecracker", "qemu":
	default:
		fields["hypervisor"] = "must be firecracker, qemu, or empty for the host's default"
	}
	switch {
	case len(spec.BootArgs) > MaxBootArgs:
		fields["boot_args"] = fmt.Sprintf("must be at most %d bytes", MaxBootArgs)
	case strings.ContainsAny(spec.BootArgs, "\x00\r\n"):
		fields["boot_args"] = "must be a single line"
	}
	return app.Invalid(fields)
}

// checkPath accepts "" (not set) or a clean absolute path. Whether the file exists is the
// driver's business when the VM starts: images may be mounted later.
func checkPath(p string) string {
	switch {
	case p == "":
		return ""
	case len(p) > MaxPath:
		return "is too long"
	case strings.ContainsAny(p, "\x00\r\n"):
		return "must be a single line"
	case !filepath.IsAbs(p):
		return "must be an absolute path"
	case filepath.Clean(p) != p:
		return fmt.Sprintf("must be a clean path (did you mean %s?)", filepath.Clean(p))
	}
	return ""
}
