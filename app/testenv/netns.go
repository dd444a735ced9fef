package testenv

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// InOwnNetns runs the calling test again in a child process inside a network namespace it
// creates (CLONE_NEWNET), relays the child's log lines and verdict, and returns true; in
// the child it returns false and the test goes on there. Everything the test makes on the
// network (bridges, taps, listeners) lives and dies with that namespace. A new namespace's
// loopback is down; tests that listen on it bring it up.
func InOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("HEARTH_NETNS_CHILD") == t.Name() {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "HEARTH_NETNS_CHILD="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		Missing(t, "network namespaces (root)", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "_test.go:") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in its own network namespace: %v\n%s", err, out)
	}
	return true
}
