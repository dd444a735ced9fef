package config

import (
	"io"
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
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Listen: "127.0.0.1:8080", DataDir: "./data", PublicURL: "http://127.0.0.1:8080", LogLevel: "info",
		Hypervisor: "auto", Firecracker: "firecracker", QEMU: "qemu-system-x86_64", Bridge: "hearth0",
		JailerUID: 65534, JailerGID: 65534, JailerChroot: "/srv/jailer", MetricsInterval: 5 * time.Second, StopTimeout: 30 * time.Second,
		GuestCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/8")}}
	cwd, _ := os.Getwd()
	want.ImageDirs = []string{filepath.Join(cwd, "data", "images")}
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
	c, err := Load([]string{"--listen", "127.0.0.1:9001", "--guest-cidrs", "10.30.0.0/16, fd10::/16"}, e, io.Discard)
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
		{env: map[string]string{"HEARTH_METRICS_INTERVAL": "fast"}, part: "metrics interval"},
		{env: map[string]string{"HEARTH_STOP_TIMEOUT": "soon"}, part: "stop timeout"},
		{args: []string{"--stop-timeout", "0s"}, part: "stop timeout 0s"},
		{args: []string{"stray"}, part: "unexpected argument"},
		{args: []string{"--nope"}, part: "not defined"},
		{env: map[string]string{"HEARTH_GUEST_CIDRS": "300.0.0.0/8"}, part: "not a network"},
	} {
		_, err := Load(tt.args, env(tt.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.part) {
			t.Errorf("Load(%v, %v) error = %v, want %q", tt.args, tt.env, err, tt.part)
		}
	}
}
