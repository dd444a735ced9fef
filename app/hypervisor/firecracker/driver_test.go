package firecracker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"hearth/app/hypervisor"
	"hearth/internal/testkit/consoletest"
)

func fakeDriver(t *testing.T) (*Driver, string) {
	t.Helper()
	violations := filepath.Join(t.TempDir(), "violations")
	t.Setenv("HEARTH_FAKE_FIRECRACKER", "1")
	t.Setenv("HEARTH_FAKE_FC_VIOLATIONS", violations)
	t.Cleanup(func() {
		if b, _ := os.ReadFile(violations); len(b) > 0 {
			t.Errorf("requests that violate the Firecracker API spec:\n%s", b)
		}
	})
	return &Driver{Binary: os.Args[0]}, violations
}

func testSpec(t *testing.T) hypervisor.Spec {
	dir := t.TempDir()
	base := filepath.Join(t.TempDir(), "rootfs.ext4")
	os.WriteFile(base, []byte("base image"), 0o644)
	return hypervisor.Spec{VMID: "vm1", Name: "web-1", VCPUs: 2, MemoryMiB: 512, Kernel: "/img/vmlinux",
		Initrd: "/img/initrd", BootArgs: "console=ttyS0 reboot=k panic=1",
		Disks: []hypervisor.Disk{{ID: "rootfs", Path: base, Root: true}, {ID: "seed", Path: "/vms/vm1/seed.iso", ReadOnly: true}},
		Tap:   "hearth-tap0", MAC: "02:12:34:56:78:9a", Dir: dir, Console: filepath.Join(dir, "console.log")}
}

// TestDriverLifecycle boots, reads counters and stops against the spec-checking fake.
func TestDriverLifecycle(t *testing.T) {
	d, _ := fakeDriver(t)
	ctx := context.Background()
	m, err := d.Start(ctx, testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.PID() <= 0 {
		t.Errorf("pid %d", m.PID())
	}
	c, err := m.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.DiskReadBytes != 4096 || c.NetRxBytes != 100 {
		t.Errorf("after one flush: %+v", c)
	}
	c, _ = m.Counters(ctx)
	if c.DiskReadBytes != 8192 || c.NetTxBytes != 80 {
		t.Errorf("after two flushes (deltas add up): %+v", c)
	}
	if err := m.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("not done after Stop")
	}
	if e := m.Exit(); e.Code != 0 || e.Signal != "" {
		t.Errorf("exit after Ctrl+Alt+Del: %+v, want a clean 0", e)
	}
	// The guest got a private copy of the root image, not the base itself.
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(m.ConsolePath()), rootCopy)); err != nil || string(b) != "base image" {
		t.Errorf("private root copy: %q %v", b, err)
	}
	console, _ := os.ReadFile(m.ConsolePath())
	if !strings.Contains(string(console), "console line from the guest") {
		t.Errorf("console file: %q", console)
	}
}

// TestStopKillsAfterTimeout: a guest that ignores Ctrl+Alt+Del is killed.
func TestStopKillsAfterTimeout(t *testing.T) {
	d, _ := fakeDriver(t)
	t.Setenv("HEARTH_FAKE_FC_IGNORE_CAD", "1")
	m, err := d.Start(context.Background(), testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m.Stop(context.Background(), 300*time.Millisecond)
	if e := m.Exit(); e.Signal != "killed" || time.Since(start) < 300*time.Millisecond {
		t.Errorf("exit %+v after %v, want killed after the timeout", e, time.Since(start))
	}
}

// TestFaultMessageReachesUser: Firecracker's own explanation is in the error, and the
// process is gone.
func TestFaultMessageReachesUser(t *testing.T) {
	d, _ := fakeDriver(t)
	spec := testSpec(t)
	spec.Kernel = "/img/missing-vmlinux"
	_, err := d.Start(context.Background(), spec)
	var api *APIError
	if !errors.As(err, &api) || !strings.Contains(err.Error(), "Invalid kernel path: No such file or directory") || api.Op != "PUT /boot-source" {
		t.Fatalf("err = %v", err)
	}
}

// TestValidatorCatchesDeviations proves the fake's spec check can fail: requests the spec
// forbids are refused and recorded.
func TestValidatorCatchesDeviations(t *testing.T) {
	violations := filepath.Join(t.TempDir(), "violations")
	t.Setenv("HEARTH_FAKE_FIRECRACKER", "1")
	t.Setenv("HEARTH_FAKE_FC_VIOLATIONS", violations)
	d := &Driver{Binary: os.Args[0]}
	spec := testSpec(t)
	m, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background(), time.Second)
	if b, _ := os.ReadFile(violations); len(b) > 0 {
		t.Fatalf("the driver's own requests violate the spec:\n%s", b)
	}
	c := NewClient(filepath.Join(spec.Dir, socketFile))
	ctx := context.Background()
	bad := []error{
		c.do(ctx, "PUT", "/machine-config", map[string]any{"vcpu_count": "two", "mem_size_mib": 256}, nil),
		c.do(ctx, "PUT", "/machine-config", map[string]any{"mem_size_mib": 256}, nil), // vcpu_count is required
		c.do(ctx, "PUT", "/actions", map[string]any{"action_type": "Reboot"}, nil),
		c.do(ctx, "PUT", "/logger", map[string]any{"log_path": "/x", "level": "Loud"}, nil),
		c.do(ctx, "PUT", "/no-such-endpoint", map[string]any{}, nil),
	}
	for i, err := range bad {
		if err == nil {
			t.Errorf("bad request %d accepted", i)
		}
	}
	b, _ := os.ReadFile(violations)
	if n := len(regexp.MustCompile(`(?m)^PUT /`).FindAll(b, -1)); n != len(bad) {
		t.Errorf("%d violations recorded, want %d:\n%s", n, len(bad), b)
	}
}

func TestSpecCopyMatchesShared(t *testing.T) {
	ours, err := os.ReadFile("testdata/firecracker-swagger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../../../../shared/specs/firecracker-swagger.yaml", "../../../shared/specs/firecracker-swagger.yaml"} {
		if theirs, err := os.ReadFile(p); err == nil {
			if string(theirs) != string(ours) {
				t.Fatalf("testdata/firecracker-swagger.yaml differs from %s: copy the new spec in", p)
			}
			return
		}
	}
	t.Skip("no ../shared beside this clone to compare with")
}

// TestSerialConsoleThroughFIFOs: firecracker's stdio are FIFOs in the run dir, which it
// holds for as long as it runs. The manager's hub reads the guest's first line (written
// before the hub opened them: the pipe kept it), types a line the guest answers, lets go
// (a manager restart), and the next manager's hub, after Attach, gets the history from
// console.log and a live serial port again. The spec-checking fake plays the guest.
func TestSerialConsoleThroughFIFOs(t *testing.T) {
	d, _ := fakeDriver(t)
	ctx := context.Background()
	spec := testSpec(t)
	m, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.(*machine).Kill(); <-m.Done() })
	hub := m.(hypervisor.Consoler).Console()
	v, hist := hub.Join()
	if !strings.Contains(string(hist), "console line from the guest") {
		consoletest.Expect(t, v, "console line from the guest", 10*time.Second)
	}
	if !hub.WaitConnected(5 * time.Second) {
		t.Fatal("the hub did not open the FIFOs")
	}
	hub.Write([]byte("uname -a\n"))
	consoletest.Expect(t, v, "guest read: uname -a", 10*time.Second)

	m.(hypervisor.Releaser).Release()
	m2, err := d.Attach(ctx, spec, m.PID(), m.Identity())
	if err != nil {
		t.Fatal(err)
	}
	hub2 := m2.(hypervisor.Consoler).Console()
	w, hist := hub2.Join()
	if !strings.Contains(string(hist), "guest read: uname -a") {
		t.Errorf("history after the restart: %q", hist)
	}
	hub2.WaitConnected(5 * time.Second)
	hub2.Write([]byte("again\n"))
	consoletest.Expect(t, w, "guest read: again", 10*time.Second)
	if err := m2.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	<-m2.Done()
	if _, open := w.Next(); open {
		for _, open = w.Next(); open; _, open = w.Next() {
		}
	}
	log, _ := os.ReadFile(spec.Console)
	for _, want := range []string{"console line from the guest", "guest read: uname -a", "guest read: again"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("console.log lacks %q: %q", want, log)
		}
	}
}
