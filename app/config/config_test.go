package config

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Listen: "127.0.0.1:8080", DataDir: "./data", PublicURL: "http://127.0.0.1:8080", LogLevel: "info",
		Hypervisor: "auto", Firecracker: "firecracker", QEMU: "qemu-system-x86_64", Bridge: "hearth0", AllocateIPs: true,
		JailerUID: 65534, JailerGID: 65534, JailerChroot: "/srv/jailer", MetricsInterval: 5 * time.Second, StopTimeout: 30 * time.Second, ConsoleIdle: 30 * time.Minute,
		GuestCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/8")}}
	cwd, _ := os.Getwd()
	want.ImageDirs = []string{filepath.Join(cwd, "data", "images")}
	want.Node, want.NodeURL, want.NodeHeartbeat = DefaultNode(), "http://127.0.0.1:8080", 5*time.Second
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if c.SecureCookies() {
		t.Error("secure cookies on plain http")
	}
}

func TestEnvThenFlags(t *testing.T) {
	e := env(map[string]string{"HEARTH_LISTEN": "0.0.0.0:9000", "HEARTH_DATA_DIR": "/var/lib/hearth",
		"HEARTH_PUBLIC_URL": "https://hearth.example/", "HEARTH_GUEST_CIDRS": "10.20.0.0/16",
		"HEARTH_DATABASE_URL": "postgres://h@db/hearth", "HEARTH_ADMIN_PASSWORD": "from-env"})
	c, err := Load([]string{"--listen", "127.0.0.1:9001", "--guest-cidrs", "10.30.0.0/16, fd10::/16"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.DataDir != "/var/lib/hearth" || c.PublicURL != "https://hearth.example" ||
		c.DatabaseURL != "postgres://h@db/hearth" || c.AdminPassword != "from-env" || len(c.GuestCIDRs) != 2 ||
		c.GuestCIDRs[0].String() != "10.30.0.0/16" || !c.SecureCookies() {
		t.Errorf("flags over env: %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		part string
	}{
		{args: []string{"--guest-cidrs", "10.0.0.1/8"}, part: "host bits"},
		{args: []string{"--guest-cidrs", "ten"}, part: "not a network"},
		{args: []string{"--guest-cidrs", " , "}, part: "no networks"},
		{args: []string{"--listen", "8080"}, part: "listen address"},
		{args: []string{"--database-url", "mysql://x"}, part: "postgres://"},
		{args: []string{"--public-url", "hearth.example"}, part: "absolute http(s) URL"},
		{args: []string{"--log-level", "loud"}, part: "log level"},
		{args: []string{"--hypervisor", "xen"}, part: "hypervisor"},
		{args: []string{"--bridge-cidr", "10.77.0.1"}, part: "bridge cidr"},
		{env: map[string]string{"HEARTH_JAILER_UID": "nobody"}, part: "jailer uid"},
		{env: map[string]string{"HEARTH_METRICS_INTERVAL": "fast"}, part: `HEARTH_METRICS_INTERVAL: "fast" is not a duration`},
		{env: map[string]string{"HEARTH_METRICS_INTERVAL": "5"}, part: `HEARTH_METRICS_INTERVAL: "5" needs a unit, e.g. 5s`},
		{env: map[string]string{"HEARTH_STOP_TIMEOUT": "soon"}, part: "HEARTH_STOP_TIMEOUT"},
		{args: []string{"--metrics-interval", "10"}, part: `"10" needs a unit`},
		{env: map[string]string{"HEARTH_ALLOCATE_IPS": "yess"}, part: `HEARTH_ALLOCATE_IPS: "yess" is not a yes/no value`},
		{env: map[string]string{"HEARTH_MASQUERADE": "2"}, part: "HEARTH_MASQUERADE"},
		{args: []string{"--allocate-ips=maybe"}, part: "yes/no"},
		{args: []string{"--stop-timeout", "0s"}, part: "stop timeout 0s"},
		{args: []string{"stray"}, part: "unexpected argument"},
		{args: []string{"--nope"}, part: "not defined"},
		{env: map[string]string{"HEARTH_GUEST_CIDRS": "300.0.0.0/8"}, part: "not a network"},
		{args: []string{"--node", "Web_1"}, part: "node name"},
		{args: []string{"--node", "-a"}, part: "node name"},
		{env: map[string]string{"HEARTH_NODE": ""}, args: []string{"--node="}, part: "node name"},
		{args: []string{"--node-url", "b:8080"}, part: "node url"},
		{env: map[string]string{"HEARTH_NODE_HEARTBEAT": "100ms"}, part: "node heartbeat"},
		{args: []string{"--node-heartbeat", "2m"}, part: "node heartbeat"},
	} {
		_, err := Load(tt.args, env(tt.env))
		if err == nil || !strings.Contains(err.Error(), tt.part) {
			t.Errorf("Load(%v, %v) error = %v, want %q", tt.args, tt.env, err, tt.part)
		}
	}
}

// TestYesNoAndDurations: every spelling of yes and no an operator may write is read as
// meant, and --flag alone means yes.
func TestYesNoAndDurations(t *testing.T) {
	for _, v := range []string{"1", "true", "yes", "on", "TRUE", "Yes", "ON"} {
		c, err := Load(nil, env(map[string]string{"HEARTH_ALLOCATE_IPS": v, "HEARTH_MASQUERADE": v}))
		if err != nil || !c.AllocateIPs || !c.Masquerade {
			t.Errorf("%q: %v %v %v", v, c.AllocateIPs, c.Masquerade, err)
		}
	}
	for _, v := range []string{"0", "false", "no", "off", "No"} {
		c, err := Load(nil, env(map[string]string{"HEARTH_ALLOCATE_IPS": v}))
		if err != nil || c.AllocateIPs {
			t.Errorf("%q: %v %v", v, c.AllocateIPs, err)
		}
	}
	c, err := Load([]string{"--allocate-ips", "--masquerade=off", "--metrics-interval", "2s"}, env(map[string]string{"HEARTH_MASQUERADE": "yes"}))
	if err != nil || !c.AllocateIPs || c.Masquerade || c.MetricsInterval != 2*time.Second {
		t.Errorf("flags over the environment: %+v %v", c, err)
	}
	if c, err := Load([]string{"--allocate-ips=no"}, env(nil)); err != nil || c.AllocateIPs {
		t.Errorf("--allocate-ips=no over the default yes: %v %v", c.AllocateIPs, err)
	}
	for v, want := range map[string]string{"": "default", "none": "none", "10.77.5.1/24": "10.77.5.1/24"} {
		c, err := Load(nil, env(map[string]string{"HEARTH_BRIDGE_CIDR": v}))
		got := c.BridgeCIDR.String()
		if !c.BridgeCIDR.IsValid() {
			got = map[bool]string{true: "none", false: "default"}[c.NoNetwork]
		}
		if err != nil || got != want {
			t.Errorf("HEARTH_BRIDGE_CIDR=%q: %s %v; want %s", v, got, err, want)
		}
	}
	if _, err := Load([]string{"--help"}, env(nil)); err != flag.ErrHelp {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
	_, rest, err := Parse([]string{"--data-dir", "/d", "ops", "--log-level", "warn", "extra"}, env(nil))
	if err != nil || len(rest) != 2 || rest[0] != "ops" || rest[1] != "extra" {
		t.Errorf("positionals among flags: %q %v", rest, err)
	}
}
