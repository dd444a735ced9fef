package qemu

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"hearth/internal/testkit/testenv"
)

// TestTapStatsInOwnNamespace: the manager runs in a network namespace of its own (as in
// the tests, or a container that did not remount sysfs), with a link there that sends 20
// datagrams. Its counters are read; /sys/class/net would have shown the host's links.
func TestTapStatsInOwnNamespace(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	a := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hearth-ta"}, PeerName: "hearth-tb"}
	if err := netlink.LinkAdd(a); err != nil {
		t.Fatalf("veth: %v", err)
	}
	ta, _ := netlink.LinkByName("hearth-ta")
	tb, _ := netlink.LinkByName("hearth-tb")
	addr, _ := netlink.ParseAddr("10.99.0.1/24")
	if err := netlink.AddrAdd(ta, addr); err != nil || netlink.LinkSetUp(ta) != nil || netlink.LinkSetUp(tb) != nil {
		t.Fatalf("veth up: %v", err)
	}
	// A neighbour with the other end's MAC: datagrams to it leave through hearth-ta at once.
	if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: ta.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP("10.99.0.3"), HardwareAddr: tb.Attrs().HardwareAddr}); err != nil {
		t.Fatal(err)
	}
	before, err := tapStats("hearth-ta")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp4", "10.99.0.3:9")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		c.Write(make([]byte, 1000))
	}
	c.Close()
	after, err := tapStats("hearth-ta")
	if err != nil {
		t.Fatal(err)
	}
	if after.TxBytes-before.TxBytes < 20*1000 || after.TxPackets-before.TxPackets < 20 {
		t.Errorf("sent 20 × 1000 bytes: tx %d → %d bytes, %d → %d packets", before.TxBytes, after.TxBytes, before.TxPackets, after.TxPackets)
	}
	if _, err := tapStats("hearth-none"); err == nil {
		t.Error("a missing tap has counters")
	}
}
