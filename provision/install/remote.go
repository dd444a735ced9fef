package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// remote runs commands on the guest.
type remote struct {
	client   *ssh.Client
	root     string
	needSudo bool // not root: privileged commands go through sudo
}

// run runs a command and returns its stdout; a failure carries its stderr.
func (r *remote) run(cmd string) (string, error) {
	s, err := r.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Run(cmd); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		var exit *ssh.ExitError
		if errors.As(err, &exit) && msg != "" {
			return "", fmt.Errorf("%s (exit %d)", msg, exit.ExitStatus())
		}
		return "", fmt.Errorf("%w %s", err, msg)
	}
	return out.String(), nil
}

// sudo runs a shell script as root: directly when logged in as root, else with sudo -n
// (never prompting: a password prompt would hang the job).
func (r *remote) sudo(script string) (string, error) {
	if !r.needSudo {
		return r.run("sh -c " + shq(script))
	}
	return r.run("sudo -n sh -c " + shq(script))
}

var archs = map[string]string{"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

// detect finds the architecture, the init system and whether sudo is needed.
func (r *remote) detect(res *Result) error {
	out, err := r.run(`uname -m; id -u; if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd; elif command -v openrc-run >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then echo openrc; else echo none; fi`)
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) != 3 {
		return fmt.Errorf("unexpected answer to the detection script: %q", out)
	}
	arch, ok := archs[f[0]]
	if !ok {
		return fmt.Errorf("architecture %s is not supported (amd64 and arm64 are)", f[0])
	}
	res.Arch, res.Init = arch, f[2]
	if f[1] != "0" {
		r.needSudo = true
		if _, err := r.run("sudo -n true"); err != nil {
			return fmt.Errorf("the user is not root and cannot use sudo without a password: %w", err)
		}
	}
	return nil
}

func upload(sc *sftp.Client, path string, b []byte) error {
	f, err := sc.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// serviceScript installs and (re)starts the agent's service for the init system found.
func serviceScript(init, root, tmp, bin, conf string) string {
	switch init {
	case "systemd":
		unit := root + "/etc/systemd/system/hearth-agent.service"
		return fmt.Sprintf("install -m 0644 %s %s && systemctl daemon-reload && systemctl enable hearth-agent.service && systemctl restart hearth-agent.service",
			shq(tmp+"/unit"), shq(unit))
	case "openrc":
		script := root + "/etc/init.d/hearth-agent"
		return fmt.Sprintf("install -m 0755 %s %s && rc-update add hearth-agent default && (rc-service hearth-agent restart || rc-service hearth-agent start)",
			shq(tmp+"/unit"), shq(script))
	}
	// No init system we know: stop a running copy and start it detached, as install.sh does.
	logf := root + "/var/log/hearth-agent.log"
	return fmt.Sprintf("mkdir -p %s; pkill -f %s 2>/dev/null; sleep 0.2; nohup %s --config %s >>%s 2>&1 </dev/null &",
		shq(dir(logf)), shq("^"+bin+" --config"), shq(bin), shq(conf), shq(logf))
}
