package vm

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"hearth/app"
	"hearth/app/hypervisor/hostnet"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
)

// TestNetworkedLifecycle starts a real guest with a NIC on the host bridge. The test runs
// itself again in a network namespace it creates (CLONE_NEWNET), so the bridge, the tap and
// QEMU all live there, and the host's own network is never touched.
func TestNetworkedLifecycle(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	db := storetest.SQLite(t)
	s, spec := realGuest(t, db, t.TempDir(), 30*time.Second)
	n, err := hostnet.New(hostnet.Config{Bridge: "hearth0", CIDR: netip.MustParsePrefix("10.77.0.1/24")})
	if err != nil {
		t.Fatal(err)
	}
	s.rt.Network = n
	ctx := context.Background()
	spec.Name = "netted"
	vm, _, err := s.Create(ctx, spec, operator)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	tap, err := netlink.LinkByName(hostnet.TapName(vm.ID))
	br, err2 := netlink.LinkByName("hearth0")
	if err != nil || err2 != nil || tap.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("tap %v (%v) not on bridge %v (%v)", tap, err, br, err2)
	}
	waitConsole(t, s, vm.ID, "HEARTH-MARKER")
	if c := s.ConsoleTail(vm.ID, 40); !strings.Contains(c, "HEARTH-NICS: eth0") {
		t.Errorf("the guest has no eth0:\n%s", c)
	}
	t.Logf("guest NIC on tap %s, bridge hearth0 10.77.0.1/24", tap.Attrs().Name)
	if _, err := s.Stop(ctx, vm.ID, operator); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, vm.ID, app.VMStopped, 40*time.Second)
	s.WaitIdle()
	if _, err := netlink.LinkByName(hostnet.TapName(vm.ID)); err == nil {
		t.Error("the tap outlived its VM")
	}
}
