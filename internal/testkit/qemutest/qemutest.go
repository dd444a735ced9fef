// Package qemutest gives tests a real guest to boot under QEMU: Debian's cloud kernel
// (fetched by `make test-kernel` into HEARTH_E2E_CACHE) and a small initramfs built here
// from busybox-static, which boots in seconds under software emulation.
package qemutest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"strings"
	"testing"

	"hearth/internal/testkit/testenv"
)

// CacheDir is where `make test-kernel` unpacks the kernel package.
func CacheDir() string {
	if d := os.Getenv("HEARTH_E2E_CACHE"); d != "" {
		return d
	}
	return "/var/cache/hearth-e2e"
}

// Kernel returns the path of the cloud kernel and its modules directory.
func Kernel(t testing.TB) (vmlinuz, modules string) {
	t.Helper()
	root := filepath.Join(CacheDir(), "kernel", "root")
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*", "kernel"))
	if len(ks) == 0 || len(mods) == 0 {
		testenv.Missing(t, "Debian's cloud kernel", "run make test-kernel (it unpacks linux-image-cloud-amd64 into "+root+")")
	}
	return ks[0], mods[0]
}

// ImageDirs are the image directories a manager under test must allow for the guests of
// this package: the kernel's cache and the temp dir the initramfs is built in.
func ImageDirs() []string {
	return []string{filepath.Join(CacheDir(), "kernel"), os.TempDir()}
}

// QEMU returns qemu-system-x86_64's path.
func QEMU(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testenv.Missing(t, "QEMU", "apt-get install qemu-system-x86")
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Missing(t, "qemu-img", err)
	}
	return p
}

// Modules are loaded in this order: each needs the ones before it.
var Modules = []string{
	"drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko", "drivers/virtio/virtio_pci_legacy_dev.ko",
	"drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci.ko", "drivers/block/virtio_blk.ko",
	"net/core/failover.ko", "drivers/net/net_failover.ko", "drivers/net/virtio_net.ko",
	"drivers/input/evdev.ko", "drivers/acpi/button.ko",
}

// Init is the guest's /init: load the modules, report the disks, print the marker, and
// power off when the ACPI power button is pressed (QMP system_powerdown).
const Init = `#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules.order); do $B insmod /modules/$m || echo "HEARTH-INSMOD-FAILED $m"; done
n=0
while [ ! -e /sys/block/vda ] && [ $n -lt 50 ]; do $B sleep 0.1; n=$((n+1)); done
echo "HEARTH-DISKS: $($B ls /sys/block | $B tr '\n' ' ')"
echo "HEARTH-NICS: $($B ls /sys/class/net | $B tr '\n' ' ')"
$B dd if=/dev/vda of=/dev/null bs=4096 count=64 2>/dev/null
echo hello > /dev/vda
$B sync
pb=""
for e in /sys/class/input/event*; do
	[ "$($B cat $e/device/name 2>/dev/null)" = "Power Button" ] && pb=/dev/input/${e##*/}
done
# Open the power button before saying we are up: evdev only hands events to readers that
# are already open, so a press right after the marker would otherwise be lost. (evdev also
# refuses reads smaller than one event: 24 bytes on 64-bit.)
if [ -n "$pb" ]; then
	$B dd if="$pb" of=/dev/null bs=24 count=1 2>/dev/null &
	reader=$!
	$B sleep 0.2
fi
echo "HEARTH-MARKER: booted (power button: $pb)"
if [ -n "$pb" ]; then wait $reader; echo "HEARTH-POWEROFF"; $B poweroff -f; fi
while :; do $B sleep 60; done
`

// ShellInit is Init with a shell on the serial console once booted (the power button
// still powers off): what a console test types into.
var ShellInit = strings.Replace(Init, `if [ -n "$pb" ]; then
	$B dd if="$pb" of=/dev/null bs=24 count=1 2>/dev/null &
	reader=$!
	$B sleep 0.2
fi
echo "HEARTH-MARKER: booted (power button: $pb)"
if [ -n "$pb" ]; then wait $reader; echo "HEARTH-POWEROFF"; $B poweroff -f; fi
while :; do $B sleep 60; done
`, `if [ -n "$pb" ]; then
	( $B dd if="$pb" of=/dev/null bs=24 count=1 2>/dev/null; echo "HEARTH-POWEROFF"; $B poweroff -f ) &
	$B sleep 0.2
fi
$B --install -s /bin
echo "HEARTH-MARKER: booted (power button: $pb)"
while :; do $B setsid $B cttyhack $B sh -i; done
`, 1)

// Initramfs builds an initramfs (newc cpio) with busybox-static, the modules and Init.
func Initramfs(t testing.TB, modulesDir string) string {
	t.Helper()
	return InitramfsWith(t, modulesDir, Init, nil)
}

// InitramfsWith builds an initramfs with the given /init script and extra files (path in
// the image → contents, executable).
func InitramfsWith(t testing.TB, modulesDir, init string, extra map[string][]byte) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		testenv.Missing(t, "busybox", "apt-get install busybox-static")
	}
	if out, _ := exec.Command("file", "-L", bb).Output(); len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) {
		testenv.Missing(t, "busybox-static", "the busybox on PATH is dynamically linked; apt-get install busybox-static")
	}
	var w cpio
	for _, d := range []string{"bin", "dev", "proc", "sys", "modules", "tmp"} {
		w.dir(d)
	}
	w.node("dev/console", 0o020600, 5, 1) // init's stdio: without it /init has no console
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	w.file("bin/busybox", 0o755, b)
	w.symlink("bin/sh", "busybox")
	var order []string
	for _, m := range Modules {
		b, err := os.ReadFile(filepath.Join(modulesDir, m))
		if err != nil {
			t.Fatalf("module %s: %v", m, err)
		}
		name := filepath.Base(m)
		w.file("modules/"+name, 0o644, b)
		order = append(order, name)
	}
	w.file("modules.order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	for name, b := range extra {
		w.file(name, 0o755, b)
	}
	w.file("init", 0o755, []byte(init))
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := os.WriteFile(p, w.close(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cpio writes the "newc" format the kernel unpacks into its initial rootfs.
type cpio struct {
	buf bytes.Buffer
	ino int
}

func (c *cpio) entry(name string, mode uint32, rmaj, rmin int, data []byte) {
	c.ino++
	fmt.Fprintf(&c.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	c.buf.WriteString(name)
	c.buf.WriteByte(0)
	c.pad()
	c.buf.Write(data)
	c.pad()
}

func (c *cpio) pad() {
	for c.buf.Len()%4 != 0 {
		c.buf.WriteByte(0)
	}
}

func (c *cpio) dir(name string)                             { c.entry(name, 0o040755, 0, 0, nil) }
func (c *cpio) file(name string, perm uint32, b []byte)     { c.entry(name, 0o100000|perm, 0, 0, b) }
func (c *cpio) symlink(name, target string)                 { c.entry(name, 0o120777, 0, 0, []byte(target)) }
func (c *cpio) node(name string, mode uint32, maj, min int) { c.entry(name, mode, maj, min, nil) }
func (c *cpio) close() []byte {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.buf.Bytes()
}

func init() {
	if ShellInit == Init {
		panic("qemutest: ShellInit no longer matches Init's ending")
	}
}
