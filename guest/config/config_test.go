package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hearth-agent.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	p := writeConf(t, `# written by cloud-init
HEARTH_AGENT_LISTEN=:9000
HEARTH_AGENT_TOKEN='hag_from_the_file_0123456789'
export HEARTH_MANAGER_URL="http://192.168.1.1:8080/"
HEARTH_VM_ID=abc123
HEARTH_REGISTRATION_TOKEN=hrg_token
HEARTH_SAMPLE_INTERVAL=10
`)
	env := map[string]string{"HEARTH_AGENT_LISTEN": "127.0.0.1:9100"}
	c, err := Load([]string{"--config", p, "--sample-interval", "2s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" || c.Token != "hag_from_the_file_0123456789" || c.ManagerURL != "http://192.168.1.1:8080" ||
		c.VMID != "abc123" || c.RegToken != "hrg_token" || c.SampleInterval != 2*time.Second || !c.Registers() {
		t.Errorf("config = %+v", c)
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	c, err := Load([]string{"--config", filepath.Join(t.TempDir(), "absent")}, func(string) string { return "" }, io.Discard)
	if err == nil {
		t.Errorf("an explicitly named missing file must be an error, got %+v", c)
	}
	// The default path may be absent: `hearth-agent --listen 127.0.0.1:PORT` must work.
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skip(DefaultPath + " exists on this machine")
	}
	c, err = Load([]string{"--listen", "127.0.0.1:9200"}, func(k string) string {
		return map[string]string{"HEARTH_AGENT_TOKEN": "a-token-from-env-123"}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9200" || c.Token != "a-token-from-env-123" || c.SampleInterval != 5*time.Second || c.Registers() {
		t.Errorf("config = %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range []struct{ conf, part string }{
		{"HEARTH_AGENT_LISTEN=8080", "host:port"},
		{"HEARTH_SAMPLE_INTERVAL=fast", "duration"},
		{"HEARTH_SAMPLE_INTERVAL=1ms", "between"},
		{"HEARTH_AGENT_TOKEN=short", "too short"},
		{"HEARTH_MANAGER_URL=http://m:8080", "all of"},
		{"HEARTH_MANAGER_URL=ftp://m\nHEARTH_VM_ID=a\nHEARTH_REGISTRATION_TOKEN=b", "http(s) URL"},
		{"HEARTH_MANAGER_URL=http://m\nHEARTH_VM_ID=a/b\nHEARTH_REGISTRATION_TOKEN=b", "not a VM id"},
		{"HEARTH_LISTN=:80", "unknown key"},
		{"just words", "KEY=value"},
		{"HEARTH_AGENT_TOKEN=two words", "quote"},
		{`HEARTH_AGENT_TOKEN="$(reboot)"`, "cannot contain"},
		{"HEARTH_AGENT_TOKEN='it's'", "cannot contain"},
	} {
		p := writeConf(t, tt.conf)
		_, err := Load([]string{"--config", p}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.part) {
			t.Errorf("%q: error %v, want %q", tt.conf, err, tt.part)
		}
	}
}

// FuzzParseFile: whatever is in the file, parsing returns values or an error, never panics,
// and every accepted value is free of control characters and, when it came bare or
// double-quoted, of anything /bin/sh would expand.
func FuzzParseFile(f *testing.F) {
	f.Add("HEARTH_AGENT_LISTEN=:8080\n# c\nexport HEARTH_VM_ID='x'\n")
	f.Add(`HEARTH_AGENT_TOKEN="abc"`)
	f.Add("HEARTH_VM_ID=\x00\n")
	f.Fuzz(func(t *testing.T, s string) {
		vals, err := ParseFile(strings.NewReader(s))
		if err != nil {
			return
		}
		for k, v := range vals {
			for _, r := range v {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("%s accepted with control character in %q", k, v)
				}
			}
			if strings.ContainsAny(v, "$`") && !strings.Contains(s, k+"='") && !strings.Contains(s, "export "+k+"='") {
				t.Fatalf("%s accepted unquoted with shell-active value %q", k, v)
			}
		}
	})
}
