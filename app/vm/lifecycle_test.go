package vm

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/app"

	"github.com/vishvananda/netlink"

	"hearth/app/hypervisor"
	"hearth/app/hypervisor/hostnet"
	"hearth/app/hypervisor/qemu"
	"hearth/app/store"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
)

// realGuest gives a service that runs VMs under QEMU, and a spec of the busybox guest.
func realGuest(t *testing.T, db *store.DB, dataDir string, stopTimeout time.Duration) (*Service, app.VMSpec) {
	t.Helper()
	bin := qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.Initramfs(t, mods)
	s := NewService(db, testRules(t), dataDir).WithRuntime(Runtime{Drivers: map[string]hypervisor.Driver{"qemu": &qemu.Driver{Binary: bin}},
		Default: "qemu", ImageDirs: qemutest.ImageDirs(), StopTimeout: stopTimeout})
	return s, app.VMSpec{VCPUs: 1, MemoryMiB: 256, Kernel: kernel, Initrd: initrd, BootArgs: "console=ttyS0 panic=-1 rdinit=/init"}
}

func waitState(t *testing.T, s *Service, id string, want app.VMState, within time.Duration) *app.VM {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		vm, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if vm.State == want {
			return vm
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM is %s (%s), want %s", vm.State, vm.StateReason, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitConsole(t *testing.T, s *Service, id, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(s.ConsoleTail(id, 50), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console:\n%s", want, s.ConsoleTail(id, 50))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLifecycleRealGuest(t *testing.T) {
	db := storetest.SQLite(t)
	s, spec := realGuest(t, db, t.TempDir(), 30*time.Second)
	ctx := context.Background()
	spec.Name = "life"
	vm, _, err := s.Create(ctx, spec, operator)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stop(ctx, vm.ID, operator); app.ErrorCode(err) != app.ECONFLICT {
		t.Errorf("stop of a defined VM: %v", err)
	}
	start := time.Now()
	got, err := s.Start(ctx, vm.ID, operator)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != app.VMRunning || got.PID <= 0 || got.RunningDriver != "qemu" {
		t.Errorf("after start: %s pid %d driver %q", got.State, got.PID, got.RunningDriver)
	}
	if _, err := s.Start(ctx, vm.ID, operator); app.ErrorCode(err) != app.ECONFLICT {
		t.Errorf("second start: %v", err)
	}
	if _, err := s.Update(ctx, vm.ID, app.VMUpdate{}, operator); app.ErrorCode(err) != app.ECONFLICT {
		t.Errorf("edit while running: %v", err)
	}
	waitConsole(t, s, vm.ID, "HEARTH-MARKER")
	t.Logf("start to marker: %.1f s", time.Since(start).Seconds())
	if m := s.Machine(vm.ID); m == nil {
		t.Fatal("no machine for a running VM")
	} else if c, err := m.Counters(ctx); err != nil || c.DiskReads == 0 && c.DiskReadBytes == 0 && len(spec.Rootfs) > 0 {
		t.Errorf("counters %+v %v", c, err)
	}
	st, err := s.Stop(ctx, vm.ID, operator)
	if err != nil || st.State != app.VMStopping {
		t.Fatalf("stop: %v %s", err, st.State)
	}
	stopped := waitState(t, s, vm.ID, app.VMStopped, 40*time.Second)
	if stopped.StateReason != "" {
		t.Errorf("a clean stop has reason %q", stopped.StateReason)
	}

	// Restart: stop, then start again by itself.
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, s, vm.ID, "HEARTH-MARKER")
	firstPID := s.Machine(vm.ID).PID()
	if _, err := s.Restart(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := s.Machine(vm.ID); m != nil && m.PID() != firstPID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restart did not bring up a new process")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitState(t, s, vm.ID, app.VMRunning, 10*time.Second)

	// A hypervisor that dies unasked marks the VM failed, with the exit and the console.
	waitConsole(t, s, vm.ID, "HEARTH-MARKER")
	syscall.Kill(s.Machine(vm.ID).PID(), syscall.SIGKILL)
	failed := waitState(t, s, vm.ID, app.VMFailed, 10*time.Second)
	if !strings.Contains(failed.StateReason, "killed by signal killed") || !strings.Contains(failed.StateReason, "last console lines") {
		t.Errorf("failure reason: %q", failed.StateReason)
	}
	// A failed VM can be started again.
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, s, vm.ID, "HEARTH-MARKER") // so the power button is heard
	s.Stop(ctx, vm.ID, operator)
	waitState(t, s, vm.ID, app.VMStopped, 40*time.Second)
	s.WaitIdle()
}

func TestStartRefusesMissingImages(t *testing.T) {
	db := storetest.SQLite(t)
	s, spec := realGuest(t, db, t.TempDir(), time.Second)
	ctx := context.Background()
	// Images are checked at create (and edit), and again at start: a file can vanish.
	bad := spec
	bad.Name, bad.Kernel = "nokernel", "/nonexistent/vmlinuz"
	if _, _, err := s.Create(ctx, bad, operator); app.ErrorFields(err)["kernel"] == "" || !strings.Contains(err.Error(), "/nonexistent/vmlinuz") {
		t.Errorf("create with a missing kernel: %v", err)
	}
	gone := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(gone, []byte("k"), 0o644)
	bad.Kernel = gone
	vm, _, err := s.Create(ctx, bad, operator)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(gone)
	if _, err := s.Start(ctx, vm.ID, operator); app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), gone) {
		t.Errorf("start after the kernel vanished: %v", err)
	}
	if got, _ := s.Get(ctx, vm.ID); got.State != app.VMDefined {
		t.Errorf("state after a refused start: %s", got.State)
	}
	missing := "/nonexistent/rootfs.img"
	if _, err := s.Update(ctx, vm.ID, app.VMUpdate{Rootfs: &missing}, operator); app.ErrorFields(err)["rootfs"] == "" {
		t.Errorf("edit to a missing rootfs: %v", err)
	}
	spec.Name, spec.Hypervisor = "fc", "firecracker"
	vm, _, _ = s.Create(ctx, spec, operator)
	if _, err := s.Start(ctx, vm.ID, operator); app.ErrorCode(err) != app.EUNAVAILABLE {
		t.Errorf("start with an absent driver: %v", err)
	}
}

// TestReattachAfterManagerRestart: a second service over the same database, as after a
// manager restart, takes over the running VM by pid and QMP socket, and can stop it; a VM
// whose process is gone is marked stopped with the reason.
func TestReattachAfterManagerRestart(t *testing.T) {
	db := storetest.SQLite(t)
	dataDir := t.TempDir()
	s1, spec := realGuest(t, db, dataDir, 30*time.Second)
	ctx := context.Background()
	spec.Name = "survivor"
	vm, _, _ := s1.Create(ctx, spec, operator)
	if _, err := s1.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, s1, vm.ID, "HEARTH-MARKER")
	pid := s1.Machine(vm.ID).PID()
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	spec.Name = "ghost"
	ghost, _, _ := s1.Create(ctx, spec, operator)
	db.SetRun(ctx, ghost.ID, store.Run{State: app.VMRunning, PID: 999999, Driver: "qemu"}, nil)

	s1.Detach()                                        // the first manager shuts down, leaving the VM running
	s2, _ := realGuest(t, db, dataDir, 30*time.Second) // the "restarted manager"
	if err := s2.Reattach(ctx); err != nil {
		t.Fatal(err)
	}
	if m := s2.Machine(vm.ID); m == nil || m.PID() != pid {
		t.Fatalf("not re-attached: %v", m)
	}
	g, _ := s2.Get(ctx, ghost.ID)
	if g.State != app.VMStopped || !strings.Contains(g.StateReason, "was gone") {
		t.Errorf("ghost VM: %s %q", g.State, g.StateReason)
	}
	if _, err := s2.Stop(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitState(t, s2, vm.ID, app.VMStopped, 40*time.Second)
	if syscall.Kill(pid, 0) == nil && !strings.Contains(procState(pid), "Z") {
		t.Error("the re-attached hypervisor still runs after stop")
	}
	s2.WaitIdle()
}

func procState(pid int) string {
	out, _ := exec.Command("ps", "-o", "stat=", "-p", strconv.Itoa(pid)).Output()
	return string(out)
}

// TestLeakCycles runs 20 create/start/stop/delete cycles of networked VMs, in a network
// namespace of its own, and then looks for what a leak would leave: hypervisor processes,
// taps, files under the data dir, open descriptors, rows.
func TestLeakCycles(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	db := storetest.SQLite(t)
	dataDir := t.TempDir()
	// A short stop timeout: these guests are stopped before they boot, so the power button
	// goes unheard and the quit/kill path is what runs.
	s, spec := realGuest(t, db, dataDir, 500*time.Millisecond)
	n, err := hostnet.New(hostnet.Config{Bridge: "hearth0", CIDR: netip.MustParsePrefix("10.77.0.1/24")})
	if err != nil {
		t.Fatal(err)
	}
	s.rt.Network = n
	ctx := context.Background()
	fdsBefore := openFDs(t)
	const cycles = 20
	var ids []string
	for i := 0; i < cycles; i++ {
		spec.Name = "leak-" + strconv.Itoa(i)
		vm, _, err := s.Create(ctx, spec, operator)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, vm.ID)
		if _, err := s.Start(ctx, vm.ID, operator); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stop(ctx, vm.ID, operator); err != nil {
			t.Fatal(err)
		}
		waitState(t, s, vm.ID, app.VMStopped, 20*time.Second)
		if err := s.Delete(ctx, vm.ID, operator); err != nil {
			t.Fatal(err)
		}
	}
	s.WaitIdle()
	var leftProcs []string
	for _, id := range ids {
		if out, _ := exec.Command("pgrep", "-f", "hearth-"+id).Output(); len(out) > 0 {
			leftProcs = append(leftProcs, id)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "vms"))
	fdsAfter := openFDs(t)
	vms, _ := s.List(ctx)
	links, _ := netlink.LinkList()
	var taps []string
	for _, l := range links {
		if l.Type() == "tuntap" {
			taps = append(taps, l.Attrs().Name)
		}
	}
	t.Logf("after %d cycles: %d hypervisor processes left, %d taps left, %d VM dirs left, open fds %d -> %d, %d VM rows",
		cycles, len(leftProcs), len(taps), len(entries), fdsBefore, fdsAfter, len(vms))
	if len(leftProcs) > 0 || len(taps) > 0 || len(entries) > 0 || fdsAfter > fdsBefore+2 || len(vms) > 0 {
		t.Errorf("leaks: processes %v, taps %v, dirs %d, fds %d -> %d, rows %d", leftProcs, taps, len(entries), fdsBefore, fdsAfter, len(vms))
	}
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestStopForcedIsRecorded: a guest that ignores the ACPI power button is killed after the
// stop timeout, and the VM says so (reason and audit log) instead of looking like a clean
// stop.
func TestStopForcedIsRecorded(t *testing.T) {
	db := storetest.SQLite(t)
	s, spec := realGuest(t, db, t.TempDir(), 2*time.Second)
	_, mods := qemutest.Kernel(t)
	deaf := strings.Replace(qemutest.Init, `= "Power Button" ]`, `= "no such button" ]`, 1)
	if deaf == qemutest.Init {
		t.Fatal("the test guest's init changed: cannot make it ignore the power button")
	}
	spec.Initrd = qemutest.InitramfsWith(t, mods, deaf, nil)
	spec.Name = "deaf"
	ctx := context.Background()
	vm, _, err := s.Create(ctx, spec, operator)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	// The guest ignores the button: stop it by force at the end, whatever happened.
	t.Cleanup(func() {
		if _, err := s.Stop(ctx, vm.ID, operator); err == nil {
			waitState(t, s, vm.ID, app.VMStopped, 30*time.Second)
		}
	})
	waitConsole(t, s, vm.ID, "HEARTH-MARKER: booted (power button: )")
	if _, err := s.Stop(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	stopped := waitState(t, s, vm.ID, app.VMStopped, 30*time.Second)
	if !strings.Contains(stopped.StateReason, "did not power off within 2s") {
		t.Errorf("reason of a forced stop: %q", stopped.StateReason)
	}
	log, _ := s.AuditLog(ctx, vm.ID, 5)
	if len(log) == 0 || !strings.HasPrefix(log[0].Detail, "stopped by force") {
		t.Errorf("newest audit entry: %+v", log)
	}
	// Started again and stopped cleanly, the reason goes.
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(ctx, vm.ID); v.StateReason != "" {
		t.Errorf("a started VM keeps the old reason %q", v.StateReason)
	}
}

// TestDerivedBootArgsBoot: a VM whose operator wrote no boot arguments boots with the ones
// its driver derives (console on ttyS0, and under QEMU root=/dev/vda with a root disk).
func TestDerivedBootArgsBoot(t *testing.T) {
	db := storetest.SQLite(t)
	s, spec := realGuest(t, db, t.TempDir(), 30*time.Second)
	spec.Name, spec.BootArgs = "derived", ""
	ctx := context.Background()
	vm, _, err := s.Create(ctx, spec, operator)
	if err != nil {
		t.Fatal(err)
	}
	if args, derived := s.BootArgsFor(ctx, vm); !derived || args != "console=ttyS0 panic=-1" {
		t.Errorf("derived args without a root disk: %q %v", args, derived)
	}
	if args, _ := s.BootArgsFor(ctx, &app.VM{Rootfs: "/x"}); args != "console=ttyS0 panic=-1 root=/dev/vda rw" {
		t.Errorf("derived args with a root disk: %q", args)
	}
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, s, vm.ID, "HEARTH-MARKER")
	s.Stop(ctx, vm.ID, operator)
	waitState(t, s, vm.ID, app.VMStopped, 40*time.Second)
	s.WaitIdle()
}

// TestVMFromImage: a VM made from an image boots from the image's files (its own fields
// empty); an image that is missing, not ready, or without cloud-init for a provisioned VM
// is refused at create.
func TestVMFromImage(t *testing.T) {
	db := storetest.SQLite(t)
	s, spec := realGuest(t, db, t.TempDir(), 30*time.Second)
	ctx := context.Background()
	im := &app.Image{Name: "busybox", State: app.ImageReady, Kernel: spec.Kernel, Initrd: spec.Initrd, BootArgs: spec.BootArgs,
		Init: app.InitOther, Source: app.ImageImported}
	if err := db.CreateImage(ctx, im, nil); err != nil {
		t.Fatal(err)
	}
	off, on := false, true
	vm, _, err := s.Create(ctx, app.VMSpec{Name: "from-image", Image: "busybox", Provision: &off}, operator)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Kernel != "" || vm.Image != "busybox" {
		t.Errorf("VM from an image: kernel %q image %q", vm.Kernel, vm.Image)
	}
	if args, derived := s.BootArgsFor(ctx, vm); args != spec.BootArgs || !derived {
		t.Errorf("boot args from the image: %q %v", args, derived)
	}
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitConsole(t, s, vm.ID, "HEARTH-MARKER")
	s.Stop(ctx, vm.ID, operator)
	waitState(t, s, vm.ID, app.VMStopped, 40*time.Second)
	s.WaitIdle()

	for _, c := range []struct {
		spec  app.VMSpec
		field string
		want  string
	}{
		{app.VMSpec{Name: "a", Image: "nope"}, "image", `no image is named "nope"`},
		{app.VMSpec{Name: "b", Image: "busybox", Provision: &on}, "provision", "has no cloud-init"},
	} {
		if _, _, err := s.Create(ctx, c.spec, operator); !strings.Contains(app.ErrorFields(err)[c.field], c.want) {
			t.Errorf("create %+v: %v", c.spec, err)
		}
	}
	db.CreateImage(ctx, &app.Image{Name: "half", State: app.ImageBuilding, Source: app.ImageBuilt}, nil)
	if _, _, err := s.Create(ctx, app.VMSpec{Name: "c", Image: "half", Provision: &off}, operator); !strings.Contains(app.ErrorFields(err)["image"], "building, not ready") {
		t.Errorf("create from a building image: %v", err)
	}
}
