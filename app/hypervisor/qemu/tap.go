package qemu

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// tapStats reads a tap's counters over netlink, which answers for the manager's own
// network namespace. /sys/class/net does not: it shows the namespace of whoever mounted
// sysfs, so a manager in a namespace of its own (a container, the tests) read nothing there.
func tapStats(name string) (*netlink.LinkStatistics, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("qemu: tap %s: %w", name, err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return nil, fmt.Errorf("qemu: tap %s: the kernel gave no counters", name)
	}
	return st, nil
}
