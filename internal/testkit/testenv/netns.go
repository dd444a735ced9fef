package testenv

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// InOwnNetns runs the calling test again in a child process inside a network namespace it
// creates (CLONE_NEWNET), relays the child's log lines and verdict, and returns true; in
// the child it returns false and the test goes on there. Everything the test makes on the
// network (bridges, taps, listeners) lives and dies with that namespace. A new namespace's
// loopback is down; tests that listen on it bring it up.
func InOwnNetns(t *testing.T) bool {
	t.Helper()
	return inOwn(t, syscall.CLONE_NEWNET, "network namespace", nil)
}

// InOwnMountNS is InOwnNetns for a mount namespace (CLONE_NEWNS) whose mounts do not
// propagate to the host: a tmpfs the test mounts there (a small, full disk) vanishes with
// the child.
func InOwnMountNS(t *testing.T) bool {
	t.Helper()
	return inOwn(t, syscall.CLONE_NEWNS, "mount namespace", func() {
		// The new namespace starts with the host's propagation (shared, under systemd):
		// make every mount private before the test mounts anything.
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			t.Fatalf("make the mount namespace private: %v", err)
		}
	})
}

func inOwn(t *testing.T, flag uintptr, what string, inChild func()) bool {
	t.Helper()
	if os.Getenv("HEARTH_NETNS_CHILD") == t.Name() {
		if inChild != nil {
			inChild()
		}
		return false
	}
	args := []string{"-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1"}
	// The child gets what is left of this test's time (less a little to report in), not
	// go test's default of ten minutes; it dies with this process.
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+(time.Until(d)-10*time.Second).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HEARTH_NETNS_CHILD="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flag, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig follows the thread that started the child: keep that thread for the run.
	runtime.LockOSThread()
	out, err := cmd.CombinedOutput()
	runtime.UnlockOSThread()
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		Missing(t, what+"s (root)", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "_test.go:") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in its own %s: %v\n%s", what, err, out)
	}
	return true
}
