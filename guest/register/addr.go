package register

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/prometheus/procfs"
)

// rtfUp is RTF_UP in /proc/net/route's Flags.
const rtfUp = 0x1

// DefaultRouteInterface returns the interface of the IPv4 default route with the lowest
// metric, from procRoot/net/route.
func DefaultRouteInterface(procRoot string) (string, error) {
	fs, err := procfs.NewFS(procRoot)
	if err != nil {
		return "", err
	}
	routes, err := fs.NetRoute()
	if err != nil {
		return "", err
	}
	best, metric := "", ^uint32(0)
	for _, r := range routes {
		if r.Destination == 0 && r.Mask == 0 && r.Flags&rtfUp != 0 && r.Metric < metric {
			best, metric = r.Iface, r.Metric
		}
	}
	if best == "" {
		return "", errors.New("no IPv4 default route")
	}
	return best, nil
}

// DefaultRouteAddr returns the guest's address to register: the first global unicast IPv4
// address of the default-route interface; without a default route, the first global
// unicast address (IPv4 before IPv6) of any up, non-loopback interface.
func DefaultRouteAddr(procRoot string) (netip.Addr, error) {
	if name, err := DefaultRouteInterface(procRoot); err == nil {
		if iface, err := net.InterfaceByName(name); err == nil {
			if a, ok := pick([]net.Interface{*iface}); ok {
				return a, nil
			}
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	if a, ok := pick(ifs); ok {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("no global unicast address on any interface")
}

func pick(ifs []net.Interface) (netip.Addr, bool) {
	var v6 netip.Addr
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || !ip.Unmap().IsGlobalUnicast() {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() {
				return ip, true
			}
			if !v6.IsValid() {
				v6 = ip
			}
		}
	}
	return v6, v6.IsValid()
}
