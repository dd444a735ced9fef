package hostnet

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"hearth/internal/testkit/testenv"
)

func TestChoose(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	for _, c := range []struct {
		used []netip.Prefix
		want string
	}{
		{nil, "10.77.0.1/24"},
		{[]netip.Prefix{p("10.77.0.0/24")}, "10.77.1.1/24"},
		{[]netip.Prefix{p("10.77.0.128/25"), p("10.77.1.5/32")}, "10.77.2.1/24"},
		{[]netip.Prefix{p("10.0.0.0/8")}, ""},
		{[]netip.Prefix{p("192.168.1.0/24"), p("10.76.0.0/16")}, "10.77.0.1/24"},
	} {
		got, err := Choose(DefaultPool, c.used)
		if (c.want == "") != (err != nil) || (err == nil && got.String() != c.want) {
			t.Errorf("Choose(%v) = %v, %v; want %q", c.used, got, err, c.want)
		}
	}
}

// TestChooseOnAHostThatUsesTheFirst: in a network namespace of the test's own whose links
// already hold 10.77.0.0/24 (an address) and route 10.77.1.0/24, and with a default route
// (which must not count as using everything), the default network is
// 10.77.2.1/24; once the bridge exists with it, it is chosen again (it is ours).
func TestChooseOnAHostThatUsesTheFirst(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	dummy := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "other0"}} // a dummy link is not in every kernel
	if err := netlink.LinkAdd(dummy); err != nil {
		t.Fatal(err)
	}
	link, _ := netlink.LinkByName("other0")
	addr, _ := netlink.ParseAddr("10.77.0.5/24")
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(link)
	_, dst, _ := net.ParseCIDR("10.77.1.0/24")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("10.77.0.254")}); err != nil {
		t.Fatal(err)
	}
	used, err := InUse("hearth0")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Choose(DefaultPool, used)
	if err != nil || got.String() != "10.77.2.1/24" {
		t.Fatalf("choose with 10.77.0/24 and 10.77.1/24 taken: %v %v (in use: %v)", got, err, used)
	}
	n, _ := New(Config{Bridge: "hearth0", CIDR: got})
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	used, _ = InUse("hearth0")
	if again, _ := Choose(DefaultPool, used); again != got {
		t.Errorf("with our bridge up, the choice moved to %v", again)
	}
}

// TestCanManage: as root the manager may make links; the same binary run with
// CAP_NET_ADMIN dropped from its bounding set (setpriv, as a service unit's
// CapabilityBoundingSet would) is told it may not, and why.
func TestCanManage(t *testing.T) {
	const child = "HEARTH_TEST_WITHOUT_NET_ADMIN"
	if os.Getenv(child) == "1" {
		if err := CanManage(); err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Fatalf("without CAP_NET_ADMIN: %v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "the test drops a capability root has")
	}
	if err := CanManage(); err != nil {
		t.Fatalf("as root: %v", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testenv.Missing(t, "setpriv (util-linux)", err)
	}
	cmd := exec.Command(setpriv, "--bounding-set=-net_admin", os.Args[0], "-test.run=^TestCanManage$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), child+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCanManage") {
		t.Fatalf("without CAP_NET_ADMIN: %v\n%s", err, out)
	}
}
