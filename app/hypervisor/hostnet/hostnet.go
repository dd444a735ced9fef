// Package hostnet gives VMs their host side of the network: one bridge (created when
// missing, with the gateway address), one tap per VM attached to it, optional IPv4
// addresses from the bridge's network, and optional masquerading for guest egress. It
// talks netlink (github.com/vishvananda/netlink), not the ip command.
package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
)

// Config is the host network for VMs.
type Config struct {
	Bridge string       // HEARTH_BRIDGE, default hearth0
	CIDR   netip.Prefix // HEARTH_BRIDGE_CIDR: the bridge's address and the guests' network, e.g. 10.77.0.1/24
	// Masquerade lets guests reach beyond the host (iptables NAT on the bridge's network).
	Masquerade bool
}

// Net manages the bridge and taps. Its methods act in the calling thread's network
// namespace (tests run them inside one they create).
type Net struct {
	cfg Config
}

// New checks cfg and returns a Net.
func New(cfg Config) (*Net, error) {
	if cfg.Bridge == "" {
		cfg.Bridge = "hearth0"
	}
	if len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("hostnet: bridge name %q is longer than 15 characters", cfg.Bridge)
	}
	if !cfg.CIDR.IsValid() || !cfg.CIDR.Addr().Is4() || cfg.CIDR.Bits() > 30 {
		return nil, fmt.Errorf("hostnet: bridge address %s must be an IPv4 address with a prefix of /30 or wider, e.g. 10.77.0.1/24", cfg.CIDR)
	}
	if cfg.CIDR.Addr() == cfg.CIDR.Masked().Addr() {
		return nil, fmt.Errorf("hostnet: %s is the network address; give the bridge a host address, e.g. %s", cfg.CIDR, cfg.CIDR.Masked().Addr().Next())
	}
	return &Net{cfg: cfg}, nil
}

// Config returns the configuration in force.
func (n *Net) Config() Config { return n.cfg }

// TapName is the VM's tap device: "ht" and the id's first 13 characters (IFNAMSIZ is 16).
func TapName(vmID string) string {
	if len(vmID) > 13 {
		vmID = vmID[:13]
	}
	return "ht" + vmID
}

// EnsureBridge creates the bridge if it is missing, gives it its address, and brings it up.
// It is idempotent, and leaves an existing bridge's other addresses alone.
func (n *Net) EnsureBridge() error {
	link, err := netlink.LinkByName(n.cfg.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.cfg.Bridge}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("hostnet: create bridge %s: %w", n.cfg.Bridge, err)
		}
		if link, err = netlink.LinkByName(n.cfg.Bridge); err != nil {
			return fmt.Errorf("hostnet: bridge %s: %w", n.cfg.Bridge, err)
		}
	case err != nil:
		return fmt.Errorf("hostnet: bridge %s: %w", n.cfg.Bridge, err)
	case link.Type() != "bridge":
		return fmt.Errorf("hostnet: %s exists and is a %s, not a bridge", n.cfg.Bridge, link.Type())
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("hostnet: addresses of %s: %w", n.cfg.Bridge, err)
	}
	want := n.cfg.CIDR.String()
	have := false
	for _, a := range addrs {
		have = have || a.IPNet.String() == want
	}
	if !have {
		a, _ := netlink.ParseAddr(want)
		if err := netlink.AddrAdd(link, a); err != nil {
			return fmt.Errorf("hostnet: give %s the address %s: %w", n.cfg.Bridge, want, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("hostnet: bring %s up: %w", n.cfg.Bridge, err)
	}
	if n.cfg.Masquerade {
		return n.masquerade()
	}
	return nil
}

// AddTap creates the VM's tap on the bridge, up. A leftover tap of the same name (a crash
// between start and stop) is replaced.
func (n *Net) AddTap(vmID string) (string, error) {
	name := TapName(vmID)
	if old, err := netlink.LinkByName(name); err == nil {
		netlink.LinkDel(old) //nolint:errcheck // replaced below; an error there is the one to report
	}
	br, err := netlink.LinkByName(n.cfg.Bridge)
	if err != nil {
		return "", fmt.Errorf("hostnet: bridge %s: %w", n.cfg.Bridge, err)
	}
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_VNET_HDR, NonPersist: false}
	if err := netlink.LinkAdd(tap); err != nil {
		return "", fmt.Errorf("hostnet: create tap %s: %w", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetMaster(link, br)
	}
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err != nil {
		n.DelTap(vmID) //nolint:errcheck // undo; the error below is the story
		return "", fmt.Errorf("hostnet: set up tap %s: %w", name, err)
	}
	return name, nil
}

// DelTap removes the VM's tap; a tap that is already gone is fine.
func (n *Net) DelTap(vmID string) error {
	link, err := netlink.LinkByName(TapName(vmID))
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("hostnet: delete tap %s: %w", link.Attrs().Name, err)
	}
	return nil
}

// Allocate returns the first address of the bridge's network that is not the network,
// broadcast or bridge address, and not in used.
func (n *Net) Allocate(used []netip.Addr) (netip.Addr, error) {
	taken := map[netip.Addr]bool{n.cfg.CIDR.Addr(): true}
	for _, u := range used {
		taken[u] = true
	}
	p := n.cfg.CIDR.Masked()
	last := Broadcast(p)
	for a := p.Addr().Next(); a.IsValid() && a != last && p.Contains(a); a = a.Next() {
		if !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("hostnet: no free address left in %s", p)
}

// Broadcast is the highest address of an IPv4 prefix: its directed broadcast address.
func Broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// masquerade adds (once) a NAT rule for the guests' network leaving through any other
// interface. NAT has no netlink interface of its own; iptables (nft backend) does it.
func (n *Net) masquerade() error {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return errors.New("hostnet: masquerading needs iptables (apt-get install iptables)")
	}
	rule := []string{"POSTROUTING", "-s", n.cfg.CIDR.Masked().String(), "!", "-o", n.cfg.Bridge,
		"-m", "comment", "--comment", "hearth", "-j", "MASQUERADE"}
	if exec.Command(ipt, append([]string{"-t", "nat", "-C"}, rule...)...).Run() == nil {
		return nil // already there
	}
	add := append([]string{"-t", "nat", "-A"}, rule...)
	if out, err := exec.Command(ipt, add...).CombinedOutput(); err != nil {
		return fmt.Errorf("hostnet: add masquerade rule: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Gateway is the bridge's address: the guests' default route.
func (n *Net) Gateway() netip.Addr { return n.cfg.CIDR.Addr() }

// Network is the bridge's network, e.g. 10.77.0.0/24.
func (n *Net) Network() netip.Prefix { return n.cfg.CIDR.Masked() }
