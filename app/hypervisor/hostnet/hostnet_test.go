package hostnet

import (
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"hearth/internal/testkit/testenv"
)

// inNetns runs f on a thread moved into a fresh network namespace, and moves it back. What
// f creates lives and dies with the namespace: the host's network is never touched.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		testenv.Missing(t, "network namespaces", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		testenv.Missing(t, "network namespaces (root)", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot return to the original network namespace: " + err.Error())
		}
		ns.Close()
	}()
	f()
}

func testNet(t *testing.T, masq bool) *Net {
	n, err := New(Config{Bridge: "hearth0", CIDR: netip.MustParsePrefix("10.77.0.1/24"), Masquerade: masq})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBridgeAndTaps(t *testing.T) {
	inNetns(t, func() {
		n := testNet(t, false)
		for i := 0; i < 2; i++ { // idempotent
			if err := n.EnsureBridge(); err != nil {
				t.Fatal(err)
			}
		}
		br, err := netlink.LinkByName("hearth0")
		if err != nil || br.Type() != "bridge" || br.Attrs().Flags&(1<<0) == 0 {
			t.Fatalf("bridge: %v %v", br, err)
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.0.1/24" {
			t.Errorf("bridge addresses %v", addrs)
		}
		tap, err := n.AddTap("k3j2h4g5f6d7s8a9")
		if err != nil {
			t.Fatal(err)
		}
		if tap != "htk3j2h4g5f6d7s" || len(tap) > 15 {
			t.Errorf("tap name %q", tap)
		}
		l, err := netlink.LinkByName(tap)
		if err != nil || l.Type() != "tuntap" || l.Attrs().MasterIndex != br.Attrs().Index {
			t.Fatalf("tap %v on master %d, bridge is %d: %v", l, l.Attrs().MasterIndex, br.Attrs().Index, err)
		}
		// A leftover tap of the same name (a crash) is replaced, not an error.
		if _, err := n.AddTap("k3j2h4g5f6d7s8a9"); err != nil {
			t.Errorf("re-adding the tap: %v", err)
		}
		if err := n.DelTap("k3j2h4g5f6d7s8a9"); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName(tap); err == nil {
			t.Error("tap still there after DelTap")
		}
		if err := n.DelTap("k3j2h4g5f6d7s8a9"); err != nil {
			t.Errorf("deleting a missing tap: %v", err)
		}
	})
}

func TestBridgeNameTaken(t *testing.T) {
	inNetns(t, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hearth0"}, PeerName: "hearth0-peer"}); err != nil {
			t.Fatal(err)
		}
		if err := testNet(t, false).EnsureBridge(); err == nil || !strings.Contains(err.Error(), "not a bridge") {
			t.Errorf("a non-bridge named hearth0: %v", err)
		}
	})
}

func TestMasquerade(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		testenv.Missing(t, "iptables", err)
	}
	inNetns(t, func() {
		n := testNet(t, true)
		for i := 0; i < 2; i++ {
			if err := n.EnsureBridge(); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command("iptables", "-t", "nat", "-S", "POSTROUTING").CombinedOutput()
		if err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if n := strings.Count(string(out), "MASQUERADE"); n != 1 || !strings.Contains(string(out), "-s 10.77.0.0/24 ! -o hearth0") {
			t.Errorf("nat rules (want exactly one masquerade):\n%s", out)
		}
	})
}

func TestAllocate(t *testing.T) {
	n, _ := New(Config{CIDR: netip.MustParsePrefix("10.77.0.1/29")}) // .0 net, .1 bridge, .7 broadcast
	var used []netip.Addr
	var got []string
	for {
		a, err := n.Allocate(used)
		if err != nil {
			break
		}
		used = append(used, a)
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.77.0.2 10.77.0.3 10.77.0.4 10.77.0.5 10.77.0.6" {
		t.Errorf("allocations %v", got)
	}
	if _, err := n.Allocate(used); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Errorf("exhausted: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []Config{
		{CIDR: netip.MustParsePrefix("10.77.0.0/24")}, // the network address
		{CIDR: netip.MustParsePrefix("10.77.0.1/31")}, // too narrow
		{CIDR: netip.MustParsePrefix("fd00::1/64")},   // IPv4 only
		{Bridge: "a-very-long-bridge-name", CIDR: netip.MustParsePrefix("10.0.0.1/24")},
		{},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
