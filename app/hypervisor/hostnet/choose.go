package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// DefaultPool is where the manager's own bridge network is chosen from, a /24 of it, as
// Incus does for incusbr0.
var DefaultPool = netip.MustParsePrefix("10.77.0.0/16")

// InUse lists the IPv4 networks this host already has: its interfaces' addresses (with
// their prefixes) and its routes (but the default route), in the calling thread's network
// namespace. bridge's own, if it exists, is left out: it is ours to reuse.
func InUse(bridge string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("hostnet: list links: %w", err)
	}
	skip := map[int]bool{}
	for _, l := range links {
		if l.Attrs().Name == bridge {
			skip[l.Attrs().Index] = true
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list addresses: %w", err)
	}
	for _, a := range addrs {
		if skip[a.LinkIndex] {
			continue
		}
		if p, ok := prefixOf(a.IPNet.String()); ok {
			out = append(out, p.Masked())
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || skip[r.LinkIndex] {
			continue
		}
		// A default route (0.0.0.0/0; some kernels give it no Dst) covers everything: it
		// does not make a network taken.
		if p, ok := prefixOf(r.Dst.String()); ok && p.Bits() > 0 {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func prefixOf(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	return p, err == nil && p.Addr().Is4()
}

// Choose returns the first /24 of pool that overlaps none of used, with the bridge's
// address (.1) as the host part: 10.77.0.1/24, or 10.77.1.1/24 when 10.77.0.0/24 is taken.
func Choose(pool netip.Prefix, used []netip.Prefix) (netip.Prefix, error) {
	if !pool.Addr().Is4() || pool.Bits() > 24 {
		return netip.Prefix{}, fmt.Errorf("hostnet: the pool %s must be IPv4 and /24 or wider", pool)
	}
	base := pool.Masked().Addr().As4()
	count := 1 << (24 - pool.Bits())
	for i := 0; i < count; i++ {
		n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 + uint32(i)<<8
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return netip.PrefixFrom(cand.Addr().Next(), 24), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("hostnet: every /24 of %s is in use on this host; set HEARTH_BRIDGE_CIDR", pool)
}

// CanManage reports whether this process may create links (root, or CAP_NET_ADMIN), and if
// not, why.
func CanManage() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return err
			}
			const capNetAdmin = 12
			if caps&(1<<capNetAdmin) == 0 {
				return errors.New("the manager runs without CAP_NET_ADMIN (not as root)")
			}
			return nil
		}
	}
	return errors.New("no CapEff in /proc/self/status")
}
