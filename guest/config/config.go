// Package config reads hearth-agent's configuration: defaults, then the file
// /etc/hearth-agent.conf, then HEARTH_* environment variables, then flags.
//
// The file is KEY=value lines that /bin/sh can also source (the OpenRC script does), so
// values may be bare, 'single-quoted' or "double-quoted"; '#' starts a comment line.
package config

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"hearth/guest/api"
)

// DefaultPath is where cloud-init and the installer write the agent's configuration.
const DefaultPath = "/etc/hearth-agent.conf"

// Keys recognised in the file and the environment.
const (
	KeyListen     = "HEARTH_AGENT_LISTEN"
	KeyToken      = "HEARTH_AGENT_TOKEN"
	KeyManagerURL = "HEARTH_MANAGER_URL"
	KeyVMID       = "HEARTH_VM_ID"
	KeyRegToken   = "HEARTH_REGISTRATION_TOKEN"
	KeyInterval   = "HEARTH_SAMPLE_INTERVAL"
)

var keys = []string{KeyListen, KeyToken, KeyManagerURL, KeyVMID, KeyRegToken, KeyInterval}

// Config is the agent's configuration.
type Config struct {
	Listen         string        // address to serve on
	Token          string        // bearer token required by /metrics; "" means open
	ManagerURL     string        // where to register the guest IP; "" disables registration
	VMID           string        // this VM's id at the manager
	RegToken       string        // this VM's registration token
	SampleInterval time.Duration // how often to read /proc
	ConfigPath     string        // the file read, for logs
}

// Registers reports whether self-registration is configured.
func (c Config) Registers() bool { return c.ManagerURL != "" }

// defaultListen is every interface on the contract's port.
var defaultListen = ":" + strconv.Itoa(api.DefaultPort)

// Load reads the configuration. A missing file at the default path is fine (flags and
// environment may say it all); a missing file named by --config is an error.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("hearth-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", DefaultPath, "configuration file of KEY=value lines")
	listen := fs.String("listen", "", "address to serve on (default "+defaultListen+") ["+KeyListen+"]")
	token := fs.String("token", "", "bearer token required by /metrics ["+KeyToken+"]; prefer the environment: flags show in ps")
	manager := fs.String("manager-url", "", "manager URL for guest-IP registration ["+KeyManagerURL+"]")
	vmID := fs.String("vm-id", "", "this VM's id at the manager ["+KeyVMID+"]")
	interval := fs.String("sample-interval", "", "how often to read /proc, e.g. 5s (default 5s) ["+KeyInterval+"]")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })

	vals := map[string]string{KeyListen: defaultListen, KeyInterval: "5s"}
	if b, err := os.ReadFile(*path); err == nil {
		file, err := ParseFile(strings.NewReader(string(b)))
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", *path, err)
		}
		for k, v := range file {
			vals[k] = v
		}
	} else if explicit || !errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	for _, k := range keys {
		if v := getenv(k); v != "" {
			vals[k] = v
		}
	}
	for k, f := range map[string]*string{KeyListen: listen, KeyToken: token, KeyManagerURL: manager, KeyVMID: vmID, KeyInterval: interval} {
		if *f != "" {
			vals[k] = *f
		}
	}
	c := Config{Listen: vals[KeyListen], Token: vals[KeyToken], ManagerURL: strings.TrimRight(vals[KeyManagerURL], "/"),
		VMID: vals[KeyVMID], RegToken: vals[KeyRegToken], ConfigPath: *path}
	return c, c.check(vals[KeyInterval])
}

func (c *Config) check(interval string) error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%s %q: want host:port or :port", KeyListen, c.Listen)
	}
	d, err := time.ParseDuration(interval)
	if err != nil {
		// Plain seconds too: HEARTH_SAMPLE_INTERVAL=5.
		n, nerr := strconv.Atoi(interval)
		if nerr != nil {
			return fmt.Errorf("%s %q: want a duration like 5s", KeyInterval, interval)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 500*time.Millisecond || d > time.Hour {
		return fmt.Errorf("%s %s: want between 500ms and 1h", KeyInterval, d)
	}
	c.SampleInterval = d
	if c.Token != "" && len(c.Token) < 16 {
		return fmt.Errorf("%s is too short to be a secret (at least 16 characters)", KeyToken)
	}
	reg := []string{c.ManagerURL, c.VMID, c.RegToken}
	set := 0
	for _, v := range reg {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return fmt.Errorf("registration needs all of %s, %s and %s, or none", KeyManagerURL, KeyVMID, KeyRegToken)
	}
	if c.ManagerURL != "" {
		u, err := url.Parse(c.ManagerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s %q: want an http(s) URL", KeyManagerURL, c.ManagerURL)
		}
		if strings.ContainsAny(c.VMID, "/?#% ") {
			return fmt.Errorf("%s %q is not a VM id", KeyVMID, c.VMID)
		}
	}
	return nil
}

// ParseFile reads KEY=value lines. Blank lines and lines starting with '#' are skipped; an
// optional leading "export " is allowed; values may be quoted with ' or ". Unknown keys are
// an error, so that a typo does not silently leave a setting at its default.
func ParseFile(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	sc.Buffer(make([]byte, 4096), 16<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=value", n)
		}
		k = strings.TrimSpace(k)
		known := false
		for _, key := range keys {
			known = known || key == k
		}
		if !known {
			return nil, fmt.Errorf("line %d: unknown key %q", n, k)
		}
		val, err := unquote(v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, k, err)
		}
		out[k] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

// unquote takes a shell-style value: bare (no spaces, quotes or $), or wholly inside single
// or double quotes (double-quoted values may not contain $, ` or \ so that sh reads them the
// same way we do).
func unquote(v string) (string, error) {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("control characters are not allowed")
		}
	}
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		inner := v[1 : len(v)-1]
		if strings.Contains(inner, "'") {
			return "", errors.New("a single-quoted value cannot contain '")
		}
		return inner, nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		inner := v[1 : len(v)-1]
		if strings.ContainsAny(inner, "\"$`\\") {
			return "", errors.New(`a double-quoted value cannot contain ", $, ` + "`" + ` or \`)
		}
		return inner, nil
	}
	if strings.ContainsAny(v, " \t'\"$`\\;&|<>(){}") {
		return "", errors.New("quote a value with spaces or shell characters in it")
	}
	return v, nil
}
