package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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

// Netns is a network namespace a test makes besides the one it runs in: another host on a
// link the test lays between them. A sleeping process holds it; it is killed at cleanup
// (or when the test process dies), and the namespace goes with it.
type Netns struct{ Pid int }

// NewNetns makes a network namespace with its loopback up.
func NewNetns(t *testing.T) Netns {
	t.Helper()
	started, done := make(chan error, 1), make(chan struct{})
	var cmd *exec.Cmd
	go func() {
		// Pdeathsig follows the thread that started the holder: this goroutine keeps it
		// until cleanup.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd = exec.Command("sleep", "7200")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		started <- err
		if err == nil {
			<-done
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	if err := <-started; err != nil {
		Missing(t, "network namespaces (root)", err)
	}
	n := Netns{Pid: cmd.Process.Pid}
	t.Cleanup(func() { close(done) })
	h := n.Handle(t)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up the new namespace's loopback: %v", err)
	}
	return n
}

// Path is the namespace's file, for nsenter --net and setns.
func (n Netns) Path() string { return fmt.Sprintf("/proc/%d/ns/net", n.Pid) }

// Command is exec.Command run inside the namespace (through nsenter, which execs name:
// the process is name's own, and killing it kills name).
func (n Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path(), "--", name}, args...)...)
}

// Handle is a netlink handle that works inside the namespace, closed at cleanup.
func (n Netns) Handle(t *testing.T) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPid(n.Pid)
	if err != nil {
		t.Fatalf("open the namespace of %d: %v", n.Pid, err)
	}
	h, err := netlink.NewHandleAt(ns)
	ns.Close()
	if err != nil {
		t.Fatalf("netlink in the namespace of %d: %v", n.Pid, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth lays a link between the test's own namespace (here, with address here) and other
// (there): a veth pair named name-a / name-b, both up.
func Veth(t *testing.T, name string, other Netns, here, there string) {
	t.Helper()
	a, b := name+"-a", name+"-b"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	peer, err := netlink.LinkByName(b)
	if err == nil {
		err = netlink.LinkSetNsPid(peer, other.Pid)
	}
	if err != nil {
		t.Fatalf("move %s into the other namespace: %v", b, err)
	}
	addr := func(h *netlink.Handle, link, cidr string) {
		l, err := h.LinkByName(link)
		if err != nil {
			t.Fatalf("%s: %v", link, err)
		}
		ad, err := netlink.ParseAddr(cidr)
		if err == nil {
			err = h.AddrAdd(l, ad)
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", link, cidr, err)
		}
	}
	own, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	addr(own, a, here)
	addr(other.Handle(t), b, there)
}
