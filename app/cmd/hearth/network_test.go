package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"hearth/app/config"
	"hearth/app/hypervisor/hostnet"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
)

// TestDefaultNetwork: a manager started as root with no network setting, on a host (a
// network namespace of the test's own) whose links already use 10.77.0.0/24, makes its
// bridge hearth0 on 10.77.1.1/24 at start, serves guests there (the guest-IP callback and
// nothing else), gives guests that URL, and keeps the choice: after the host's own use of
// 10.77.0.0/24 is gone, the next start still uses 10.77.1.1/24. An explicit setting wins.
func TestDefaultNetwork(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	lo, _ := netlink.LinkByName("lo")
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	other := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}}
	if err := netlink.LinkAdd(other); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.77.0.20/24")
	if err := netlink.AddrAdd(other, addr); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(other)

	dataDir := t.TempDir()
	env := map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_BRIDGE_CIDR": ""}
	m, _ := startMain(t, env)
	if m.Network == nil || m.NetworkNote != "" {
		t.Fatalf("no default network: %q", m.NetworkNote)
	}
	if got := m.Network.Config().CIDR.String(); got != "10.77.1.1/24" {
		t.Fatalf("chose %s with 10.77.0.0/24 in use; want 10.77.1.1/24", got)
	}
	br, err := netlink.LinkByName("hearth0")
	if err != nil {
		t.Fatalf("no bridge after start: %v", err)
	}
	addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.1.1/24" {
		t.Errorf("hearth0's addresses: %v", addrs)
	}
	if kept, _ := m.DB.Setting(context.Background(), bridgeSetting+"/"+m.Config.Node); kept != "10.77.1.1/24" {
		t.Errorf("the choice kept in the database: %q", kept)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(m.URL(), "http://"))
	guests := "http://10.77.1.1:" + port
	if m.Config.PublicURL != guests || m.prov.PublicURL != guests || m.Jobs.PublicURL != guests {
		t.Errorf("guests are told %q / %q / %q; want %s", m.Config.PublicURL, m.prov.PublicURL, m.Jobs.PublicURL, guests)
	}
	// On the bridge: the callback is the real handler (it wants a token); the pages, the
	// API and the metrics are not there.
	if st, body := call(t, guests, "hrg_wrong", http.MethodPost, "/v1/vms/nosuchvm/guest-ip", `{"ip":"10.77.1.9"}`); st != http.StatusUnauthorized ||
		body["error"] == nil || strings.Contains(body["error"].(map[string]any)["message"].(string), "only the guest endpoints") {
		t.Errorf("the callback was not served on the bridge: %d %v", st, body)
	}
	for _, path := range []string{"/", "/login", "/v1/vms", "/metrics", "/healthz"} {
		resp, err := http.Get(guests + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "only the guest endpoints") {
			t.Errorf("GET %s on the bridge: %d %s", path, resp.StatusCode, b)
		}
	}
	m.Close()

	// The host's own use of 10.77.0.0/24 goes away: the kept choice stays.
	netlink.LinkDel(other)
	m, _ = startMain(t, env)
	if got := m.Network.Config().CIDR.String(); got != "10.77.1.1/24" {
		t.Errorf("second start chose %s; want the kept 10.77.1.1/24", got)
	}
	m.Close()

	env["HEARTH_BRIDGE_CIDR"] = "10.88.0.1/24"
	env["HEARTH_BRIDGE"] = "mine0"
	m, _ = startMain(t, env)
	if got := m.Network.Config().CIDR.String(); got != "10.88.0.1/24" {
		t.Errorf("explicit HEARTH_BRIDGE_CIDR: %s", got)
	}
	if _, err := netlink.LinkByName("mine0"); err != nil {
		t.Errorf("explicit bridge not made: %v", err)
	}
}

// TestNoNetworkSaysWhy: without the privilege to manage links the manager starts, makes no
// bridge and records no choice, and says why VMs get no network and what to do, once in
// its log and on each VM page.
func TestNoNetworkSaysWhy(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	lo, _ := netlink.LinkByName("lo")
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	canManageLinks = func() error { return errors.New("the manager runs without CAP_NET_ADMIN (not as root)") }
	t.Cleanup(func() { canManageLinks = hostnet.CanManage })
	m, _ := startMain(t, map[string]string{"HEARTH_BRIDGE_CIDR": "", "HEARTH_ADMIN_PASSWORD": "no-net-pw"})
	if m.Network != nil {
		t.Fatal("a network without the privilege")
	}
	for _, want := range []string{"VMs get no network", "CAP_NET_ADMIN", "as root", "HEARTH_BRIDGE_CIDR"} {
		if !strings.Contains(m.NetworkNote, want) {
			t.Errorf("the note %q lacks %q", m.NetworkNote, want)
		}
	}
	if _, err := netlink.LinkByName("hearth0"); err == nil {
		t.Error("a bridge was made")
	}
	if kept, _ := m.DB.SettingsWithPrefix(context.Background(), bridgeSetting); len(kept) != 0 {
		t.Errorf("a choice was recorded: %q", kept)
	}
	token, _ := m.Auth.CreateAPIToken(context.Background(), "t", cliActor)
	st, vm := call(t, m.URL(), token, http.MethodPost, "/v1/vms", `{"name":"no-net","provision":false}`)
	if st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, vm)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	form := url.Values{"name": {"admin"}, "password": {"no-net-pw"}, "next": {"/vms/" + vm["id"].(string)}}
	req, _ := http.NewRequest(http.MethodPost, m.URL()+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin") // as a browser signs in
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `data-testid="network-note"`) || !strings.Contains(string(page), "CAP_NET_ADMIN") {
		t.Errorf("the VM page does not say VMs get no network (%d):\n%.2000s", resp.StatusCode, page)
	}
}

// TestNodeNetworks (PostgreSQL): nodes sharing a database each get their own bridge /24:
// the first node adopts the one host's network of before nodes, the next one a free /24
// none of them uses, and each keeps its own at its next start.
func TestNodeNetworks(t *testing.T) {
	db := storetest.Postgres(t)
	ctx := context.Background()
	if err := db.SetSetting(ctx, bridgeSetting, "10.77.5.1/24"); err != nil { // the one host of before
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, name := range []string{"alpha", "beta", "gamma", "alpha", "beta"} {
		p, err := nodeNetwork(ctx, config.Config{Node: name, Bridge: "hearth-test-none"}, db)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := got[name]; ok && prev != p.String() {
			t.Errorf("%s chose %s, then %s", name, prev, p)
		}
		got[name] = p.String()
	}
	t.Logf("networks: %v", got)
	if got["alpha"] != "10.77.5.1/24" {
		t.Errorf("the first node did not adopt the network of before nodes: %v", got)
	}
	seen := map[string]string{}
	for n, p := range got {
		pp := netip.MustParsePrefix(p).Masked().String()
		if other, ok := seen[pp]; ok {
			t.Errorf("%s and %s share %s", n, other, pp)
		}
		seen[pp] = n
	}
}
