package app

import (
	"path/filepath"
	"time"
)

// ImageState is where an image is in its life: being built or imported, ready to boot VMs
// from, or failed (with the step and why).
type ImageState string

// Image states.
const (
	ImageBuilding ImageState = "building"
	ImageReady    ImageState = "ready"
	ImageFailed   ImageState = "failed"
)

// Image sources.
const (
	ImageBuilt    = "built"    // by the manager's builder, from Debian's packages
	ImageImported = "imported" // from files an operator gave
	ImageOCI      = "oci"      // flattened from an OCI image
)

// Init systems an image's guest runs.
const (
	InitSystemd = "systemd"
	InitOpenRC  = "openrc"
	InitOther   = "other"
)

// Image is what VMs boot from: a kernel (compressed bzImage, and an uncompressed vmlinux for
// Firecracker), an initrd and a root filesystem, in the data dir's images/<name>/.
type Image struct {
	Name      string
	Node      string // the node whose data dir holds its files: the same name may be on several
	State     ImageState
	Kernel    string // bzImage (QEMU boots it)
	Vmlinux   string // the same kernel, uncompressed (Firecracker needs it); "" if none
	Initrd    string // "" if none
	Rootfs    string // ext4
	BootArgs  string // what the image needs beyond the driver's defaults; usually ""
	Arch      string // GOARCH: amd64, arm64
	Init      string // InitSystemd, InitOpenRC, InitOther
	CloudInit bool   // cloud-init (NoCloud) is installed: VMs from it can be provisioned
	Files     []ImageFile
	Source    string // ImageBuilt, ImageImported, ImageOCI
	Reference string // what it was made from: "bookworm systemd", paths, an OCI reference
	Steps     []JobStep
	Error     string // why it failed
	Log       string // the newest lines of the build's log
	CreatedAt time.Time
	UpdatedAt time.Time
	// UsedBy is the names of the VMs made from it (filled by the store on reads).
	UsedBy []string
}

// ImageFile is one file of an image, with what identifies it.
type ImageFile struct {
	Name   string `json:"name"` // vmlinuz, vmlinux, initrd.img, rootfs.ext4
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Dir is the directory that holds the image's files ("" before they exist).
func (im *Image) Dir() string {
	if im.Rootfs == "" {
		return ""
	}
	return filepath.Dir(im.Rootfs)
}

// Size is the total of the image's files, in bytes.
func (im *Image) Size() int64 {
	var n int64
	for _, f := range im.Files {
		n += f.Size
	}
	return n
}

// KernelFor is the kernel a driver boots: Firecracker's is the uncompressed one.
func (im *Image) KernelFor(driver string) string {
	if driver == "firecracker" && im.Vmlinux != "" {
		return im.Vmlinux
	}
	return im.Kernel
}

// Audit actions on images.
const (
	AuditImageCreate = "image.create"
	AuditImageDelete = "image.delete"
)
