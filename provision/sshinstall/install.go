// Package sshinstall puts the guest agent into a running VM over SSH: connect (pinning the
// host key), detect architecture and init system, upload over SFTP to a temporary path,
// check the sha256, move into place by rename, write the config, install and start the
// service (with sudo when not root), wait for /health, register the guest IP. Running it
// again upgrades in place.
package sshinstall

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"hearth/app"
	"hearth/provision/services"
)

// Steps, in order. The job shows them with their state.
const (
	StepConnect  = "connect"
	StepDetect   = "detect"
	StepUpload   = "upload"
	StepVerify   = "verify"
	StepInstall  = "install"
	StepConfig   = "config"
	StepService  = "service"
	StepHealth   = "health"
	StepRegister = "register"
)

// Steps lists the step names in order.
var Steps = []string{StepConnect, StepDetect, StepUpload, StepVerify, StepInstall, StepConfig, StepService, StepHealth, StepRegister}

// Request is one install.
type Request struct {
	Host    string // the VM's registered guest IP, already checked against the guest-IP rules
	Creds   app.Credentials
	Signer  ssh.Signer // the manager's key, used when Creds has no key or password
	HostKey string     // pinned host key (authorized_keys form); "" trusts the first one seen
	Conf    string     // /etc/hearth-agent.conf contents
	// Root prefixes every path written on the guest; "" on real guests. Tests install into
	// a scratch root on the machine running sshd.
	Root string
	// Health checks the started agent; Register records the guest IP. Either may be nil.
	Health   func(ctx context.Context) (version string, err error)
	Register func(ctx context.Context) error
}

// Result is what the install found and did.
type Result struct {
	Arch, Init   string
	HostKey      string // the key the guest presented
	HostKeyNew   bool   // it was trusted on first use (the caller should record it)
	SHA256       string
	AgentVersion string
}

// StepError is a failure at one step, with a message for the operator.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// HostKeyMismatchError: the guest presented another host key than the pinned one.
type HostKeyMismatchError struct{ Want, Got string }

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch: expected %s, the guest presented %s; refusing to connect (if the guest was rebuilt, clear the recorded key)", e.Want, e.Got)
}

// Installer runs installs.
type Installer struct {
	// Agent returns the agent binary for a GOARCH.
	Agent func(arch string) ([]byte, error)
	// DialTimeout bounds the TCP and SSH handshake (default 15 s).
	DialTimeout time.Duration
	// HealthTimeout bounds the wait for /health (default 60 s).
	HealthTimeout time.Duration
}

// Run performs the install, calling progress as each step starts.
func (in *Installer) Run(ctx context.Context, req Request, progress func(step string)) (Result, error) {
	var res Result
	step := func(name string) {
		if progress != nil {
			progress(name)
		}
	}
	fail := func(name string, err error) (Result, error) {
		if ctx.Err() != nil { // whatever broke, it broke because the time was up
			err = ended(ctx.Err())
		}
		return res, &StepError{Step: name, Err: err}
	}

	step(StepConnect)
	client, err := in.dial(ctx, req, &res)
	if err != nil {
		return fail(StepConnect, err)
	}
	defer client.Close()
	// A guest that stops answering must not hold the install past its context: closing the
	// connection ends every session and the SFTP transfer blocked on it.
	defer context.AfterFunc(ctx, func() { client.Close() })()
	r := &remote{ctx: ctx, client: client, root: req.Root}

	step(StepDetect)
	if err := r.detect(&res); err != nil {
		return fail(StepDetect, err)
	}
	agent, err := in.Agent(res.Arch)
	if err != nil {
		return fail(StepDetect, err)
	}
	sum := sha256.Sum256(agent)
	res.SHA256 = hex.EncodeToString(sum[:])

	step(StepUpload)
	tmp, err := r.run("mktemp -d /tmp/.hearth-install.XXXXXX")
	if err != nil {
		return fail(StepUpload, err)
	}
	tmp = strings.TrimSpace(tmp)
	defer r.run("rm -rf " + shq(tmp)) //nolint:errcheck // best effort; a dead connection leaves only /tmp litter
	sc, err := sftp.NewClient(client)
	if err != nil {
		return fail(StepUpload, fmt.Errorf("start sftp: %w", err))
	}
	defer sc.Close()
	files := map[string][]byte{"hearth-agent": agent, "hearth-agent.conf": []byte(req.Conf)}
	switch res.Init {
	case "systemd":
		files["unit"] = services.Systemd
	case "openrc":
		files["unit"] = services.OpenRC
	}
	for name, b := range files {
		if err := upload(sc, tmp+"/"+name, b); err != nil {
			return fail(StepUpload, fmt.Errorf("%s: %w", name, err))
		}
	}

	step(StepVerify)
	out, err := r.run("sha256sum " + shq(tmp+"/hearth-agent"))
	if err != nil {
		return fail(StepVerify, err)
	}
	if got := strings.Fields(out); len(got) == 0 || got[0] != res.SHA256 {
		return fail(StepVerify, fmt.Errorf("uploaded agent has sha256 %s, want %s; nothing was installed", strings.Join(got[:min(1, len(got))], ""), res.SHA256))
	}

	step(StepInstall)
	bin := req.Root + "/usr/local/bin/hearth-agent"
	// install to a sibling, then rename: the path holds the old agent or the new one, never
	// a partial file, and a running agent keeps its inode until restarted.
	if _, err := r.sudo(fmt.Sprintf("mkdir -p %s && install -m 0755 %s %s && mv -f %s %s",
		shq(dir(bin)), shq(tmp+"/hearth-agent"), shq(bin+".new"), shq(bin+".new"), shq(bin))); err != nil {
		return fail(StepInstall, err)
	}

	step(StepConfig)
	conf := req.Root + "/etc/hearth-agent.conf"
	if _, err := r.sudo(fmt.Sprintf("mkdir -p %s && install -m 0600 %s %s && mv -f %s %s",
		shq(dir(conf)), shq(tmp+"/hearth-agent.conf"), shq(conf+".new"), shq(conf+".new"), shq(conf))); err != nil {
		return fail(StepConfig, err)
	}

	step(StepService)
	if _, err := r.sudo(serviceScript(res.Init, req.Root, tmp, bin, conf)); err != nil {
		return fail(StepService, err)
	}

	step(StepHealth)
	if req.Health != nil {
		v, err := in.waitHealth(ctx, req.Health)
		if err != nil {
			return fail(StepHealth, err)
		}
		res.AgentVersion = v
	}

	step(StepRegister)
	if req.Register != nil {
		if err := req.Register(ctx); err != nil {
			return fail(StepRegister, err)
		}
	}
	return res, nil
}

func dir(p string) string { return p[:strings.LastIndexByte(p, '/')] }

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (in *Installer) dial(ctx context.Context, req Request, res *Result) (*ssh.Client, error) {
	user, port := req.Creds.User, req.Creds.Port
	if user == "" {
		user = "hearth"
	}
	if port == 0 {
		port = 22
	}
	var auth []ssh.AuthMethod
	switch {
	case len(req.Creds.PrivateKey) > 0:
		s, err := ssh.ParsePrivateKey(req.Creds.PrivateKey)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return nil, errors.New("the private key is encrypted; give an unencrypted key")
		}
		if err != nil {
			return nil, fmt.Errorf("the private key does not parse: %w", err)
		}
		auth = append(auth, ssh.PublicKeys(s))
	case req.Creds.Password != "":
		pw := req.Creds.Password
		auth = append(auth, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	case req.Signer != nil:
		auth = append(auth, ssh.PublicKeys(req.Signer))
	default:
		return nil, errors.New("no credentials: give a private key or a password")
	}
	cfg := &ssh.ClientConfig{User: user, Auth: auth, Timeout: in.dialTimeout(),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			res.HostKey = got
			if req.HostKey == "" {
				res.HostKeyNew = true // trust on first use; the caller records it
				return nil
			}
			want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.HostKey))
			if err != nil {
				return fmt.Errorf("the recorded host key does not parse: %w", err)
			}
			if !bytes.Equal(want.Marshal(), key.Marshal()) {
				return &HostKeyMismatchError{Want: ssh.FingerprintSHA256(want), Got: ssh.FingerprintSHA256(key)}
			}
			return nil
		}}
	if req.HostKey != "" {
		if want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.HostKey)); err == nil {
			cfg.HostKeyAlgorithms = []string{want.Type()} // ask for the pinned kind of key
		}
	}
	addr := net.JoinHostPort(req.Host, strconv.Itoa(port))
	d := net.Dialer{Timeout: in.dialTimeout()}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", addr, err)
	}
	conn.SetDeadline(time.Now().Add(in.dialTimeout())) //nolint:errcheck // bounds the handshake
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		var mm *HostKeyMismatchError
		if errors.As(err, &mm) {
			return nil, mm
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%s@%s refused the credentials", user, addr)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
	}
	conn.SetDeadline(time.Time{}) //nolint:errcheck
	return ssh.NewClient(c, chans, reqs), nil
}

func (in *Installer) dialTimeout() time.Duration {
	if in.DialTimeout > 0 {
		return in.DialTimeout
	}
	return 15 * time.Second
}

func (in *Installer) waitHealth(ctx context.Context, health func(context.Context) (string, error)) (string, error) {
	timeout := in.HealthTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		v, err := health(ctx)
		if err == nil {
			return v, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("the agent did not answer /health within %s: %w", timeout, last)
}
