package services

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hearth/internal/testkit/testenv"
)

func TestOpenRCScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hearth-agent")
	os.WriteFile(p, OpenRC, 0o755)
	if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	script := string(OpenRC)
	for _, want := range []string{"#!/sbin/openrc-run\n", `command="/usr/local/bin/hearth-agent"`, `supervisor="supervise-daemon"`,
		`pidfile="/run/${RC_SVCNAME}.pid"`, "output_log=", "error_log=", "\tuse net\n", "\tafter firewall\n",
		`conffile="/etc/hearth-agent.conf"`, ". \"$conffile\""} {
		if !strings.Contains(script, want) {
			t.Errorf("OpenRC script lacks %q", want)
		}
	}
}

// TestOpenRCSourcesConf: the script exports the config file's settings (as the agent's
// environment), so a file written for the agent must be valid sh.
func TestOpenRCSourcesConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "hearth-agent.conf")
	os.WriteFile(conf, []byte("HEARTH_AGENT_LISTEN=:8080\nHEARTH_AGENT_TOKEN='hag_x y$z'\n"), 0o600)
	script := strings.Replace(string(OpenRC), `conffile="/etc/hearth-agent.conf"`, `conffile="`+conf+`"`, 1)
	p := filepath.Join(dir, "hearth-agent")
	os.WriteFile(p, []byte(script), 0o755)
	cmd := exec.Command("sh", "-c", `. "$1" && env | grep '^HEARTH_' | sort`, "sh", p)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // nothing HEARTH_* but what the script exports
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sourcing: %v\n%s", err, out)
	}
	if got := string(out); got != "HEARTH_AGENT_LISTEN=:8080\nHEARTH_AGENT_TOKEN=hag_x y$z\n" {
		t.Errorf("exported environment:\n%s", got)
	}
}

// TestSystemdUnit runs systemd-analyze verify on the unit inside a scratch root (with the
// standard targets and an executable where ExecStart points). Warnings count as failures:
// systemd only warns about a misspelt directive, which would silently drop a setting.
func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze", err)
	}
	verify := func(unit []byte) (string, error) {
		root := t.TempDir()
		sys := filepath.Join(root, "etc/systemd/system")
		os.MkdirAll(sys, 0o755)
		os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755)
		targets, _ := filepath.Glob("/usr/lib/systemd/system/*.target")
		for _, tg := range targets {
			b, _ := os.ReadFile(tg)
			os.WriteFile(filepath.Join(sys, filepath.Base(tg)), b, 0o644)
		}
		os.WriteFile(filepath.Join(root, "usr/local/bin/hearth-agent"), []byte("#!/bin/sh\n"), 0o755)
		os.WriteFile(filepath.Join(sys, "hearth-agent.service"), unit, 0o644)
		out, err := exec.Command(sa, "verify", "--root="+root, "/etc/systemd/system/hearth-agent.service").CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := verify(Systemd); err != nil || out != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a misspelt directive is caught.
	bad := strings.Replace(string(Systemd), "Restart=on-failure", "Restrat=on-failure", 1)
	if out, _ := verify([]byte(bad)); !strings.Contains(out, "Unknown key") {
		t.Errorf("a misspelt directive passed verification: %q", out)
	}
	unit := string(Systemd)
	for _, want := range []string{"Restart=on-failure", "ExecStart=/usr/local/bin/hearth-agent", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "WantedBy=multi-user.target", "After=network-online.target"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}
