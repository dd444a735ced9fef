package vm

import (
	"net/netip"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/config"
)

func testRules(t testing.TB) Rules {
	cidrs, err := config.ParseCIDRs(config.DefaultGuestCIDRs)
	if err != nil {
		t.Fatal(err)
	}
	return Rules{CIDRs: cidrs, HostAddrs: func() []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("10.9.9.1"), netip.MustParseAddr("fd00::1")}
	}}
}

func TestRulesCheck(t *testing.T) {
	r := testRules(t)
	tests := []struct {
		raw, want, errPart string
	}{
		{raw: "192.168.1.100", want: "192.168.1.100"},
		{raw: "10.0.0.5", want: "10.0.0.5"},
		{raw: "172.16.0.1", want: "172.16.0.1"},
		{raw: "fd12:3456::7", want: "fd12:3456::7"},
		{raw: "FD12:3456:0:0::7", want: "fd12:3456::7"},
		{raw: "::ffff:10.1.2.3", want: "10.1.2.3"},
		{raw: "", errPart: "is empty"},
		{raw: " 10.0.0.5", errPart: "surrounding spaces"},
		{raw: "10.0.0.5\n", errPart: "surrounding spaces"},
		{raw: "10.0.0.5/24", errPart: "without a prefix length"},
		{raw: "10.0.0.5:22", errPart: "without a port"},
		{raw: "[fd00::5]:22", errPart: "without a port"},
		{raw: "fd00::5%eth0", errPart: "without a zone"},
		{raw: "fe80::1%eth0", errPart: "without a zone"},
		{raw: "vm.example", errPart: "not an IPv4 or IPv6 address"},
		{raw: "010.0.0.5", errPart: "not an IPv4 or IPv6 address"},
		{raw: "10.0.0.256", errPart: "not an IPv4 or IPv6 address"},
		{raw: "0.0.0.0", errPart: "unspecified"},
		{raw: "::", errPart: "unspecified"},
		{raw: "127.0.0.1", errPart: "loopback"},
		{raw: "127.8.9.10", errPart: "loopback"},
		{raw: "::1", errPart: "loopback"},
		{raw: "::ffff:127.0.0.1", errPart: "loopback"},
		{raw: "169.254.169.254", errPart: "link-local"},
		{raw: "fe80::1", errPart: "link-local"},
		{raw: "224.0.0.1", errPart: "multicast"},
		{raw: "ff02::1", errPart: "multicast"},
		{raw: "255.255.255.255", errPart: "broadcast"},
		{raw: "10.255.255.255", errPart: "broadcast address of 10.0.0.0/8"},
		{raw: "8.8.8.8", errPart: "outside the guest networks"},
		{raw: "2001:db8::1", errPart: "outside the guest networks"},
		{raw: "100.64.0.1", errPart: "outside the guest networks"},
		{raw: "10.9.9.1", errPart: "address of this host"},
		{raw: "fd00::1", errPart: "address of this host"},
		{raw: strings.Repeat("1", 100), errPart: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := r.Check(tt.raw)
			if tt.errPart != "" {
				if err == nil {
					t.Fatalf("Check(%q) = %v, want error containing %q", tt.raw, got, tt.errPart)
				}
				if app.ErrorCode(err) != app.EINVALID || !strings.Contains(app.ErrorMessage(err), tt.errPart) {
					t.Fatalf("Check(%q) error = %v (code %s), want invalid containing %q", tt.raw, err, app.ErrorCode(err), tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check(%q): %v", tt.raw, err)
			}
			if got.String() != tt.want {
				t.Errorf("Check(%q) = %s, want %s", tt.raw, got, tt.want)
			}
		})
	}
}

func TestRulesNarrowCIDR(t *testing.T) {
	r := Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")}, HostAddrs: func() []netip.Addr { return nil }}
	if _, err := r.Check("192.168.50.7"); err != nil {
		t.Errorf("inside: %v", err)
	}
	if _, err := r.Check("192.168.51.7"); err == nil {
		t.Error("outside the only network: want error")
	}
	if _, err := r.Check("192.168.50.255"); err == nil {
		t.Error("broadcast of the /24: want error")
	}
}

// TestRulesPeers: another node's address is refused (in any form), naming the node; the
// peers are asked at each check, so a node that joins counts at once.
func TestRulesPeers(t *testing.T) {
	peers := map[netip.Addr]string{netip.MustParseAddr("10.200.0.1"): "alpha"}
	r := Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		HostAddrs: func() []netip.Addr { return nil }, Peers: func() map[netip.Addr]string { return peers }}
	for _, raw := range []string{"10.200.0.1", "::ffff:10.200.0.1"} {
		if _, err := r.Check(raw); err == nil || !strings.Contains(err.Error(), "is the address of node alpha") {
			t.Errorf("Check(%s): %v", raw, err)
		}
	}
	if _, err := r.Check("10.200.0.2"); err != nil {
		t.Errorf("a guest beside the node: %v", err)
	}
	peers[netip.MustParseAddr("fd00::9")] = "gamma"
	if _, err := r.Check("fd00::9"); err == nil || !strings.Contains(err.Error(), "node gamma") {
		t.Errorf("a node that joined: %v", err)
	}
}

// FuzzRulesCheck: whatever a guest sends, Check never panics, and anything it accepts is a
// canonical address that satisfies every rule.
func FuzzRulesCheck(f *testing.F) {
	for _, s := range []string{"10.0.0.5", "fd00::5", "::ffff:10.0.0.1", "fe80::1%eth0", "10.0.0.5/8", "", "[::1]:80", "1.2.3.4:5"} {
		f.Add(s)
	}
	r := testRules(f)
	f.Fuzz(func(t *testing.T, raw string) {
		ip, err := r.Check(raw)
		if err != nil {
			if app.ErrorCode(err) != app.EINVALID {
				t.Fatalf("Check(%q): error code %s, want invalid", raw, app.ErrorCode(err))
			}
			return
		}
		if ip.IsLoopback() || ip.IsMulticast() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.Zone() != "" || ip.Is4In6() {
			t.Fatalf("Check(%q) accepted %s", raw, ip)
		}
		again, err := r.Check(ip.String())
		if err != nil || again != ip {
			t.Fatalf("canonical form %s of %q does not check again: %v", ip, raw, err)
		}
	})
}

func TestAllowLoopbackIsNarrow(t *testing.T) {
	r := Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true, HostAddrs: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("127.0.0.1")} }}
	if _, err := r.Check("127.3.2.1"); err != nil {
		t.Errorf("loopback allowed for benches: %v", err)
	}
	if _, err := r.Check("::1"); err == nil {
		t.Error("IPv6 loopback admitted")
	}
	if _, err := testRules(t).Check("127.3.2.1"); err == nil {
		t.Error("default rules admit loopback")
	}
}
