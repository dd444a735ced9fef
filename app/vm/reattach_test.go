package vm

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/hypervisor/qemu"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

// stranger starts a process that is not ours, in its own session as the attack did
// (setsid sleep 3600), and kills it at cleanup.
func stranger(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// earlierIdentity is what a VM row holds when its hypervisor died with the host and the
// pid was handed to the process pid since: the same boot and pid, an earlier start time.
func earlierIdentity(t *testing.T, pid int) string {
	t.Helper()
	id, err := hypervisor.IdentityOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(id, '/')
	start, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || start < 100 {
		t.Fatalf("identity %q", id)
	}
	return id[:i+1] + strconv.FormatUint(start-100, 10)
}

func alive(pid int) bool {
	_, err := hypervisor.IdentityOf(pid)
	return err == nil
}

// TestReattachLeavesStrangersAlone reproduces the attack: a VM recorded as running points
// at a pid that now belongs to something else. A restarted manager must never signal it,
// whatever its command line says, and must mark the VM stopped with the reason. A process
// proven ours (same identity) that cannot be taken over is still killed, so it is not
// orphaned.
func TestReattachLeavesStrangersAlone(t *testing.T) {
	db := storetest.SQLite(t)
	ctx := context.Background()
	s := NewService(db, testRules(t), t.TempDir()).WithRuntime(Runtime{Drivers: map[string]hypervisor.Driver{"qemu": &qemu.Driver{}},
		Default: "qemu"})
	create := func(name string) *app.VM {
		vm, _, err := s.Create(ctx, app.VMSpec{Name: name}, operator)
		if err != nil {
			t.Fatal(err)
		}
		return vm
	}
	// 1. The attack as reported: setsid sleep 3600 under the VM's pid.
	sleeper := create("sleeper")
	sleepPID := stranger(t, "sleep", "3600")
	// 2. A stranger whose command line even carries the VM's marker: only the identity
	// tells it apart.
	mimic := create("mimic")
	mimicPID := stranger(t, "sh", "-c", "sleep 3600; :", "sh", "-name", "hearth-"+mimic.ID, "x")
	// 3. A row written before identities were recorded, pointing at a stranger.
	legacy := create("legacy")
	legacyPID := stranger(t, "sleep", "3601")
	// 4. Our own process (its identity recorded at start) that cannot be taken over: no QMP
	// socket. It is killed rather than orphaned.
	ours := create("ours")
	oursPID := stranger(t, "sh", "-c", "sleep 3600; :", "sh", "-name", "hearth-"+ours.ID, "x")
	oursID, err := hypervisor.IdentityOf(oursPID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		id, identity string
		pid          int
	}{{sleeper.ID, earlierIdentity(t, sleepPID), sleepPID}, {mimic.ID, earlierIdentity(t, mimicPID), mimicPID}, {legacy.ID, "", legacyPID}, {ours.ID, oursID, oursPID}} {
		if err := db.SetRun(ctx, r.id, store.Run{State: app.VMRunning, PID: r.pid, Identity: r.identity, Driver: "qemu"}, nil); err != nil {
			t.Fatal(err)
		}
	}

	if err := s.Reattach(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a SIGKILL is delivered at once; give it a moment anyway
	for _, c := range []struct {
		vm        *app.VM
		pid       int
		wantAlive bool
		reason    string
	}{
		{sleeper, sleepPID, true, "now belongs to another process (sleep), which was left alone"},
		{mimic, mimicPID, true, "now belongs to another process (sh), which was left alone"},
		{legacy, legacyPID, true, "was left alone (no identity was recorded for it)"},
		{ours, oursPID, false, "could not take over the hypervisor process"},
	} {
		if got := alive(c.pid); got != c.wantAlive {
			t.Errorf("%s: pid %d alive = %v, want %v", c.vm.Name, c.pid, got, c.wantAlive)
		}
		got, _ := s.Get(ctx, c.vm.ID)
		if got.State != app.VMStopped || !strings.Contains(got.StateReason, c.reason) {
			t.Errorf("%s: %s %q, want stopped with %q", c.vm.Name, got.State, got.StateReason, c.reason)
		}
		if log, _ := s.AuditLog(ctx, c.vm.ID, 1); len(log) == 0 || log[0].Detail != got.StateReason {
			t.Errorf("%s: audit %+v", c.vm.Name, log)
		}
	}
}

// TestIdentity: a live process has an identity that Verify accepts; another process, or
// the same pid number after its process ended, does not match.
func TestIdentity(t *testing.T) {
	a := stranger(t, "sleep", "60")
	b := stranger(t, "sleep", "61")
	idA, err := hypervisor.IdentityOf(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := hypervisor.Verify(a, idA); err != nil {
		t.Errorf("verify own identity: %v", err)
	}
	var mm *hypervisor.MismatchError
	if err := hypervisor.Verify(b, idA); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("verify another process: %v", err)
	} else if !errors.As(err, &mm) || mm.Comm != "sleep" {
		t.Errorf("mismatch error %#v", err)
	}
	if err := hypervisor.SignalVerified(b, idA, syscall.SIGKILL); err == nil || !alive(b) {
		t.Errorf("signal with the wrong identity: %v, alive %v", err, alive(b))
	}
	if err := hypervisor.Verify(1<<22+12345, idA); err != hypervisor.ErrGone {
		t.Errorf("verify a pid nobody has: %v", err)
	}
}
