package sshinstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// remote runs commands on the guest.
type remote struct {
	ctx      context.Context // the install's: a command still running when it ends is cut off
	client   *ssh.Client
	root     string
	needSudo bool // not root: privileged commands go through sudo
}

// The guest is untrusted: what it prints is kept only up to these sizes, so a guest that
// floods cannot fill the manager's memory, the job row or the audit log.
const (
	maxStdout  = 64 << 10 // what a command may answer; more is a failure
	maxStderr  = 64 << 10 // the newest part of stderr is kept
	maxExcerpt = 300      // of which this much goes into an error message
)

// ErrTooMuchOutput: a command printed more than the installer reads.
var ErrTooMuchOutput = fmt.Errorf("the guest sent more than %d KiB of output", maxStdout>>10)

// run runs a command and returns its stdout; a failure carries the end of its stderr.
func (r *remote) run(cmd string) (string, error) {
	if err := r.ctx.Err(); err != nil {
		return "", ended(err)
	}
	s, err := r.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	out := &capped{max: maxStdout, onFull: func() { s.Close() }} // no point reading on
	errb := &capped{max: maxStderr, keepTail: true}
	s.Stdout, s.Stderr = out, errb
	err = s.Run(cmd)
	switch {
	case out.overflow:
		return "", ErrTooMuchOutput
	case r.ctx.Err() != nil:
		return "", ended(r.ctx.Err())
	case err != nil:
		msg := excerpt(errb.String())
		var exit *ssh.ExitError
		if errors.As(err, &exit) && msg != "" {
			return "", fmt.Errorf("%s (exit %d)", msg, exit.ExitStatus())
		}
		return "", fmt.Errorf("%w %s", err, msg)
	}
	return out.String(), nil
}

// ended says why the install stopped waiting for the guest.
func ended(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("the guest did not finish in time; the install was cut off")
	}
	return fmt.Errorf("the install was cancelled: %w", err)
}

// capped is a writer that keeps at most max bytes: the first ones, or with keepTail the
// newest ones. It never refuses a write, so the SSH channel keeps draining.
type capped struct {
	max      int
	keepTail bool
	onFull   func() // called once when the first max bytes are exceeded (not with keepTail)
	buf      []byte
	dropped  bool
	overflow bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if c.keepTail {
		if len(p) >= c.max {
			c.buf = append(c.buf[:0], p[len(p)-c.max:]...)
			c.dropped = true
			return n, nil
		}
		if over := len(c.buf) + len(p) - c.max; over > 0 {
			c.buf = append(c.buf[:0], c.buf[over:]...)
			c.dropped = true
		}
		c.buf = append(c.buf, p...)
		return n, nil
	}
	if room := c.max - len(c.buf); len(p) > room {
		c.buf = append(c.buf, p[:room]...)
		if !c.overflow && c.onFull != nil {
			c.onFull()
		}
		c.overflow = true
		return n, nil
	}
	c.buf = append(c.buf, p...)
	return n, nil
}

func (c *capped) String() string { return string(c.buf) }

// excerpt is the end of a guest's message, short enough for an error, valid UTF-8 and
// without control characters other than newlines.
func excerpt(s string) string {
	s = strings.TrimSpace(s)
	cut := len(s) > maxExcerpt
	if cut {
		s = s[len(s)-maxExcerpt:]
	}
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r >= 0x20 && r != 0x7f && r != utf8.RuneError {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
	if cut {
		s = "…" + s
	}
	return s
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
