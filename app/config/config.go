// Package config reads Hearth's configuration: defaults, then HEARTH_* environment variables,
// then command-line flags, each overriding the one before.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultGuestCIDRs are the networks a guest IP may lie in unless configured otherwise:
// the RFC 1918 private ranges and IPv6 unique local addresses.
const DefaultGuestCIDRs = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fd00::/8"

// Config is everything `hearth serve` needs to know.
type Config struct {
	Listen          string         // HEARTH_LISTEN
	DataDir         string         // HEARTH_DATA_DIR
	DatabaseURL     string         // HEARTH_DATABASE_URL; "" means SQLite in DataDir
	AdminPassword   string         // HEARTH_ADMIN_PASSWORD
	PublicURL       string         // HEARTH_PUBLIC_URL
	PublicURLSet    bool           // PublicURL was given, not derived from Listen
	GuestCIDRs      []netip.Prefix // HEARTH_GUEST_CIDRS
	LogLevel        string         // HEARTH_LOG_LEVEL
	Hypervisor      string         // HEARTH_HYPERVISOR: firecracker, qemu, or auto
	Firecracker     string         // HEARTH_FIRECRACKER: the firecracker binary
	QEMU            string         // HEARTH_QEMU: the qemu-system-x86_64 binary
	Bridge          string         // HEARTH_BRIDGE
	BridgeCIDR      netip.Prefix   // HEARTH_BRIDGE_CIDR; invalid (unset): the manager's own default network
	NoNetwork       bool           // HEARTH_BRIDGE_CIDR=none: VMs get no NIC, and no bridge is made
	Masquerade      bool           // HEARTH_MASQUERADE
	AllocateIPs     bool           // HEARTH_ALLOCATE_IPS
	MetricsInterval time.Duration  // HEARTH_METRICS_INTERVAL
	StopTimeout     time.Duration  // HEARTH_STOP_TIMEOUT: graceful shutdown before the kill
	ConsoleIdle     time.Duration  // HEARTH_CONSOLE_IDLE: a console viewer who types nothing this long is disconnected
	Jailer          string         // HEARTH_JAILER: run firecracker through this jailer binary
	JailerUID       int            // HEARTH_JAILER_UID
	JailerGID       int            // HEARTH_JAILER_GID
	JailerChroot    string         // HEARTH_JAILER_CHROOT
	// ImageDirs (HEARTH_IMAGE_DIRS) are the directories VM kernels, initrds and root
	// filesystems must lie in; absolute. Default: the data dir's images/.
	ImageDirs []string
	// Node (HEARTH_NODE) names this manager among those sharing one PostgreSQL; default
	// the host name. NodeURL (HEARTH_NODE_URL) is where the other nodes and the UI reach
	// it; default the public URL. NodeHeartbeat (HEARTH_NODE_HEARTBEAT): how often it says
	// it is up; three missed make it down.
	Node          string
	NodeURL       string
	NodeHeartbeat time.Duration
	// ClusterSecret (the file HEARTH_CLUSTER_SECRET_FILE names) is what nodes present to
	// each other: the same on every node, at least 32 bytes; "" for none (one node, or
	// nodes that cannot reach each other's consoles).
	ClusterSecret string
}

var nodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// DefaultNode is the host name, lowercased, as a node name ("hearth" when it has none
// that fits).
func DefaultNode() string {
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	if !nodeName.MatchString(h) {
		return "hearth"
	}
	return h
}

// Load builds a Config from getenv and then args (flags without the subcommand). Flags the
// subcommand does not need are accepted anyway so that one env/flag vocabulary serves all.
// flag.ErrHelp comes back as is for -h/--help.
func Load(args []string, getenv func(string) string) (Config, error) {
	c, rest, err := Parse(args, getenv)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	return c, err
}

// Parse is Load for a subcommand that takes positional arguments too (a user name, a token
// name), before or after the flags; it returns them.
func Parse(args []string, getenv func(string) string) (Config, []string, error) {
	var c Config
	fs, finish := flags(&c, getenv)
	fs.SetOutput(io.Discard) // the error is returned, and printed once by the caller
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return Config{}, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := finish(); err != nil {
		return Config{}, nil, err
	}
	return c, rest, nil
}

// PrintFlags writes every flag with its variable and default, for --help.
func PrintFlags(w io.Writer) {
	var c Config
	fs, _ := flags(&c, func(string) string { return "" })
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// flags defines every flag over c, defaulting to the environment, and returns the set and
// a finish that checks what was read and fills the derived fields.
func flags(c *Config, getenv func(string) string) (*flag.FlagSet, func() error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var envErrs []error
	envBool := func(key string) bool {
		v := getenv(key)
		if v == "" {
			return false
		}
		b, err := ParseBool(v)
		if err != nil {
			envErrs = append(envErrs, fmt.Errorf("%s: %w", key, err))
		}
		return b
	}
	envDuration := func(key string, def time.Duration) time.Duration {
		v := getenv(key)
		if v == "" {
			return def
		}
		d, err := ParseDuration(v)
		if err != nil {
			envErrs = append(envErrs, fmt.Errorf("%s: %w", key, err))
			return def
		}
		return d
	}
	fs := flag.NewFlagSet("hearth", flag.ContinueOnError)
	fs.Usage = func() {} // the command prints its own usage for --help
	var cidrs, bridgeCIDR, imageDirs, clusterSecretFile string
	fs.StringVar(&c.Listen, "listen", env("HEARTH_LISTEN", "127.0.0.1:8080"), "address to serve HTTP on (HEARTH_LISTEN)")
	fs.StringVar(&c.DataDir, "data-dir", env("HEARTH_DATA_DIR", "./data"), "directory for the SQLite database and VM files (HEARTH_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("HEARTH_DATABASE_URL", ""), "postgres:// URL; empty uses SQLite in the data dir (HEARTH_DATABASE_URL)")
	fs.StringVar(&c.AdminPassword, "admin-password", env("HEARTH_ADMIN_PASSWORD", ""), "password for user admin, created on a first start with no users (HEARTH_ADMIN_PASSWORD)")
	fs.StringVar(&c.PublicURL, "public-url", env("HEARTH_PUBLIC_URL", ""), "URL guests use to reach the manager (HEARTH_PUBLIC_URL)")
	fs.StringVar(&cidrs, "guest-cidrs", env("HEARTH_GUEST_CIDRS", DefaultGuestCIDRs), "comma-separated networks a guest IP may lie in (HEARTH_GUEST_CIDRS)")
	fs.StringVar(&c.Hypervisor, "hypervisor", env("HEARTH_HYPERVISOR", "auto"), "firecracker, qemu, or auto: firecracker where it and KVM are usable, else qemu (HEARTH_HYPERVISOR)")
	fs.StringVar(&c.Firecracker, "firecracker", env("HEARTH_FIRECRACKER", "firecracker"), "the firecracker binary (HEARTH_FIRECRACKER)")
	fs.StringVar(&c.QEMU, "qemu", env("HEARTH_QEMU", "qemu-system-x86_64"), "the qemu-system-x86_64 binary (HEARTH_QEMU)")
	fs.StringVar(&c.Bridge, "bridge", env("HEARTH_BRIDGE", "hearth0"), "host bridge for VMs' taps (HEARTH_BRIDGE)")
	fs.StringVar(&bridgeCIDR, "bridge-cidr", env("HEARTH_BRIDGE_CIDR", ""), "the bridge's address and the VMs' network, e.g. 10.77.0.1/24; empty: a free /24 of 10.77.0.0/16 the manager picks once and keeps (as root); none: VMs get no network (HEARTH_BRIDGE_CIDR)")
	c.Masquerade = envBool("HEARTH_MASQUERADE")
	fs.Var(boolFlag{&c.Masquerade}, "masquerade", "NAT guests' traffic leaving the host: yes/no (HEARTH_MASQUERADE)")
	c.AllocateIPs = true
	if getenv("HEARTH_ALLOCATE_IPS") != "" {
		c.AllocateIPs = envBool("HEARTH_ALLOCATE_IPS")
	}
	fs.Var(boolFlag{&c.AllocateIPs}, "allocate-ips", "give provisioned VMs a static address from the bridge network, through the seed's network-config; no: leave them to DHCP (HEARTH_ALLOCATE_IPS) (default yes)")
	fs.StringVar(&c.Jailer, "jailer", env("HEARTH_JAILER", ""), "run firecracker through this jailer binary (HEARTH_JAILER)")
	jailUID, jailGID := env("HEARTH_JAILER_UID", "65534"), env("HEARTH_JAILER_GID", "65534")
	fs.StringVar(&c.JailerChroot, "jailer-chroot", env("HEARTH_JAILER_CHROOT", "/srv/jailer"), "the jailer's chroot base, on the data dir's filesystem (HEARTH_JAILER_CHROOT)")
	c.MetricsInterval = envDuration("HEARTH_METRICS_INTERVAL", 5*time.Second)
	fs.Var(durationFlag{&c.MetricsInterval}, "metrics-interval", "how often running VMs are polled, e.g. 5s (HEARTH_METRICS_INTERVAL)")
	c.ConsoleIdle = envDuration("HEARTH_CONSOLE_IDLE", 30*time.Minute)
	fs.Var(durationFlag{&c.ConsoleIdle}, "console-idle", "how long a console viewer may type nothing before it is disconnected, e.g. 30m (HEARTH_CONSOLE_IDLE)")
	c.StopTimeout = envDuration("HEARTH_STOP_TIMEOUT", 30*time.Second)
	fs.Var(durationFlag{&c.StopTimeout}, "stop-timeout", "how long a stopping guest may take to power off after the ACPI power button (Firecracker: Ctrl+Alt+Del) before it is killed, e.g. 30s (HEARTH_STOP_TIMEOUT)")
	fs.StringVar(&imageDirs, "image-dirs", env("HEARTH_IMAGE_DIRS", ""), "comma-separated directories VM kernels, initrds and root filesystems must lie in; default: the data dir's images/ (HEARTH_IMAGE_DIRS)")
	fs.StringVar(&c.LogLevel, "log-level", env("HEARTH_LOG_LEVEL", "info"), "debug, info, warn or error (HEARTH_LOG_LEVEL)")
	fs.StringVar(&c.Node, "node", env("HEARTH_NODE", DefaultNode()), "this node's name among managers sharing one PostgreSQL (HEARTH_NODE; default the host name)")
	fs.StringVar(&c.NodeURL, "node-url", env("HEARTH_NODE_URL", ""), "where other nodes and the UI reach this one (HEARTH_NODE_URL; default the public URL)")
	fs.StringVar(&clusterSecretFile, "cluster-secret-file", env("HEARTH_CLUSTER_SECRET_FILE", ""), "a file holding the secret nodes present to each other, the same on every node (HEARTH_CLUSTER_SECRET_FILE)")
	c.NodeHeartbeat = envDuration("HEARTH_NODE_HEARTBEAT", 5*time.Second)
	fs.Var(durationFlag{&c.NodeHeartbeat}, "node-heartbeat", "how often this node says it is up; three missed make it down, e.g. 5s (HEARTH_NODE_HEARTBEAT)")
	return fs, func() error {
		if err := c.finish(errors.Join(envErrs...), cidrs, bridgeCIDR, imageDirs, jailUID, jailGID); err != nil {
			return err
		}
		return c.readClusterSecret(clusterSecretFile)
	}
}

// finish checks what flags and environment gave and fills the derived fields.
func (c *Config) finish(envErr error, cidrs, bridgeCIDR, imageDirs, jailUID, jailGID string) error {
	if envErr != nil {
		return envErr
	}
	var err error
	if c.GuestCIDRs, err = ParseCIDRs(cidrs); err != nil {
		return fmt.Errorf("guest cidrs: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen address %q: %w", c.Listen, err)
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return errors.New("database url must be empty (SQLite) or start with postgres://")
	}
	c.PublicURLSet = c.PublicURL != ""
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("public url %q must be an absolute http(s) URL", c.PublicURL)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.JailerUID, err = strconv.Atoi(jailUID); err != nil || c.JailerUID < 0 {
		return fmt.Errorf("jailer uid %q is not a number", jailUID)
	}
	if c.JailerGID, err = strconv.Atoi(jailGID); err != nil || c.JailerGID < 0 {
		return fmt.Errorf("jailer gid %q is not a number", jailGID)
	}
	if !nodeName.MatchString(c.Node) {
		return fmt.Errorf("node name %q: want lowercase letters, digits, '.' and '-' (at most 63, starting and ending with a letter or digit)", c.Node)
	}
	if c.NodeURL == "" {
		c.NodeURL = c.PublicURL
	}
	if u, err := url.Parse(c.NodeURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("node url %q must be an absolute http(s) URL", c.NodeURL)
	}
	c.NodeURL = strings.TrimRight(c.NodeURL, "/")
	if c.NodeHeartbeat < time.Second || c.NodeHeartbeat > time.Minute {
		return fmt.Errorf("node heartbeat %s: want between 1s and 1m", c.NodeHeartbeat)
	}
	if c.MetricsInterval < time.Second || c.MetricsInterval > time.Hour {
		return fmt.Errorf("metrics interval %s: want between 1s and 1h", c.MetricsInterval)
	}
	if c.ConsoleIdle < 10*time.Second || c.ConsoleIdle > 24*time.Hour {
		return fmt.Errorf("console idle %s: want between 10s and 24h", c.ConsoleIdle)
	}
	if c.StopTimeout < time.Second || c.StopTimeout > time.Hour {
		return fmt.Errorf("stop timeout %s: want between 1s and 1h", c.StopTimeout)
	}
	if bridgeCIDR == "none" {
		c.NoNetwork = true
	} else if bridgeCIDR != "" {
		if c.BridgeCIDR, err = netip.ParsePrefix(bridgeCIDR); err != nil {
			return fmt.Errorf("bridge cidr %q: want the bridge's address with its prefix, e.g. 10.77.0.1/24", bridgeCIDR)
		}
	}
	if c.ImageDirs, err = parseImageDirs(imageDirs, c.DataDir); err != nil {
		return err
	}
	switch c.Hypervisor {
	case "auto", "firecracker", "qemu":
	default:
		return fmt.Errorf("hypervisor %q: want firecracker, qemu or auto", c.Hypervisor)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// parseImageDirs reads HEARTH_IMAGE_DIRS: absolute directories, or by default the data
// dir's images/ (made absolute, so a later chdir changes nothing).
func parseImageDirs(s, dataDir string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			return nil, fmt.Errorf("image dir %q must be an absolute path", f)
		}
		if filepath.Clean(f) == "/" {
			return nil, errors.New("image dir / would let VMs read every file of the host")
		}
		out = append(out, filepath.Clean(f))
	}
	if len(out) == 0 {
		abs, err := filepath.Abs(dataDir)
		if err != nil {
			return nil, fmt.Errorf("data dir %q: %w", dataDir, err)
		}
		out = []string{filepath.Join(abs, "images")}
	}
	return out, nil
}

// ParseCIDRs parses a comma-separated list of networks; it needs at least one.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network in CIDR form", f)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q has host bits set; did you mean %s?", f, p.Masked())
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no networks given")
	}
	return out, nil
}

// SecureCookies reports whether cookies should carry Secure: when the public URL is https,
// the manager is behind TLS (directly or through a proxy).
func (c Config) SecureCookies() bool { return strings.HasPrefix(c.PublicURL, "https://") }

// GuestsCannotReach reports whether the public URL names loopback, which no guest can reach.
func (c Config) GuestsCannotReach() bool {
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return true
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// readClusterSecret reads the nodes' shared secret from path ("" for none): one line of at
// least 32 bytes, in a file only its owner may read.
func (c *Config) readClusterSecret(path string) error {
	if path == "" {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cluster secret file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("cluster secret file %s is readable by others (mode %o): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cluster secret file: %w", err)
	}
	c.ClusterSecret = strings.TrimSpace(string(b))
	if len(c.ClusterSecret) < 32 || strings.ContainsAny(c.ClusterSecret, " \t\r\n") {
		return fmt.Errorf("cluster secret file %s: want one line of at least 32 characters without spaces (e.g. openssl rand -hex 32)", path)
	}
	return nil
}
