// Package vm holds the VM use cases: defining, changing and deleting VMs (and their
// directories, app.VMFiles), starting, stopping, supervising and re-attaching them through a
// hypervisor driver, and the rules for the guest IP a VM registers or an operator sets (the
// rule of who wins is app.GuestIPState.Apply).
package vm

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"hearth/app"
	"hearth/app/hypervisor/hostnet"
)

// Rules decide which guest IPs are acceptable. The guest is untrusted: an address it
// registers is later dialled by the manager, so it must not point the manager at itself,
// at loopback, or anywhere outside the networks guests live in.
type Rules struct {
	// CIDRs are the networks a guest IP must lie in (HEARTH_GUEST_CIDRS).
	CIDRs []netip.Prefix
	// HostAddrs returns the host's own addresses, which a guest may never claim. Nil means
	// the addresses of the host's interfaces, read at each check.
	HostAddrs func() []netip.Addr
	// Peers maps the other nodes' addresses to their names (node.Service.Peers): a guest
	// may not claim another manager's address either. Nil: no other nodes.
	Peers func() map[netip.Addr]string
	// AllowLoopback admits 127.0.0.0/8 (when a CIDR holds it): only for tests and benches
	// whose "guests" are loopback listeners. Never set it in a running manager.
	AllowLoopback bool
}

// Check parses raw as a guest IP and applies the rules. It returns the address in canonical
// form, or an EINVALID error whose message says what is wrong.
func (r Rules) Check(raw string) (netip.Addr, error) {
	bad := func(format string, args ...any) (netip.Addr, error) {
		return netip.Addr{}, app.Errorf(app.EINVALID, "guest_ip "+format, args...)
	}
	if raw == "" {
		return bad("is empty")
	}
	if len(raw) > 64 {
		return bad("is too long to be an IP address")
	}
	if strings.TrimSpace(raw) != raw {
		return bad("%q has surrounding spaces", raw)
	}
	ip, err := netip.ParseAddr(raw)
	if err != nil {
		switch {
		case strings.Contains(raw, "/"):
			return bad("%q must be a bare address, without a prefix length", raw)
		case strings.HasPrefix(raw, "[") || strings.Count(raw, ":") == 1:
			return bad("%q must be a bare address, without a port", raw)
		}
		return bad("%q is not an IPv4 or IPv6 address", raw)
	}
	if ip.Zone() != "" {
		return bad("%q must be a bare address, without a zone", raw)
	}
	ip = ip.Unmap()
	switch {
	case ip.IsUnspecified():
		return bad("%s is the unspecified address", ip)
	case ip.IsLoopback() && !(r.AllowLoopback && ip.Is4()):
		return bad("%s is a loopback address", ip)
	case ip.IsLinkLocalUnicast():
		return bad("%s is a link-local address", ip)
	case ip.IsMulticast():
		return bad("%s is a multicast address", ip)
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return bad("%s is the broadcast address", ip)
	}
	var in netip.Prefix
	for _, p := range r.CIDRs {
		if p.Contains(ip) {
			in = p
			break
		}
	}
	if !in.IsValid() {
		nets := make([]string, len(r.CIDRs))
		for i, p := range r.CIDRs {
			nets[i] = p.String()
		}
		return bad("%s is outside the guest networks (%s)", ip, strings.Join(nets, ", "))
	}
	if ip.Is4() && in.Bits() <= 30 && ip == hostnet.Broadcast(in) {
		return bad("%s is the broadcast address of %s", ip, in)
	}
	for _, h := range r.hostAddrs() {
		if h.Unmap() == ip && !(r.AllowLoopback && ip.IsLoopback()) {
			return bad("%s is an address of this host", ip)
		}
	}
	if r.Peers != nil {
		if n, ok := r.Peers()[ip]; ok && !(r.AllowLoopback && ip.IsLoopback()) {
			return bad("%s is the address of node %s, another manager", ip, n)
		}
	}
	return ip, nil
}

func (r Rules) hostAddrs() []netip.Addr {
	if r.HostAddrs != nil {
		return r.HostAddrs()
	}
	return InterfaceAddrs()
}

// InterfaceAddrs returns the addresses of the host's network interfaces, read at most once
// a second: the collector checks every running VM's guest IP each round, and a netlink
// dump per check (~15 µs) is 3 % of a core at 10,000 VMs.
func InterfaceAddrs() []netip.Addr {
	hostAddrs.Lock()
	defer hostAddrs.Unlock()
	if time.Since(hostAddrs.at) < time.Second {
		return hostAddrs.addrs
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	hostAddrs.addrs, hostAddrs.at = out, time.Now()
	return out
}

var hostAddrs struct {
	sync.Mutex
	addrs []netip.Addr
	at    time.Time
}
