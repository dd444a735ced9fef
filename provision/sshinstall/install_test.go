package sshinstall

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"hearth/app"
	"hearth/internal/testkit/installtest"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type setup struct {
	sshd  *installtest.Server
	root  string
	port  int
	agent []byte
	in    *Installer
	req   Request
	steps []string
}

func newSetup(t *testing.T, agent []byte) *setup {
	t.Helper()
	s := &setup{sshd: installtest.Start(t), root: t.TempDir(), port: freePort(t), agent: agent}
	host, port, _ := net.SplitHostPort(s.sshd.Addr)
	var p int
	fmt.Sscan(port, &p)
	s.in = &Installer{Agent: func(arch string) ([]byte, error) { return s.agent, nil }, HealthTimeout: 20 * time.Second}
	health := fmt.Sprintf("http://127.0.0.1:%d/health", s.port)
	s.req = Request{Host: host, Creds: app.Credentials{User: "root", Port: p}, Signer: s.sshd.Client, Root: s.root,
		Conf: fmt.Sprintf("HEARTH_AGENT_LISTEN=127.0.0.1:%d\nHEARTH_AGENT_TOKEN=hag_installtest_token\n", s.port),
		Health: func(ctx context.Context) (string, error) {
			resp, err := http.Get(health)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var h struct{ Status, Version string }
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Status != "ok" {
				return "", fmt.Errorf("health answered %d %v", resp.StatusCode, err)
			}
			return h.Version, nil
		}}
	// Whatever the test started, stop it: the agent runs from this scratch root only.
	t.Cleanup(func() { exec.Command("pkill", "-f", "^"+s.root+"/usr/local/bin/hearth-agent").Run() })
	return s
}

func (s *setup) run(t *testing.T) (Result, error) {
	s.steps = nil
	return s.in.Run(context.Background(), s.req, func(step string) { s.steps = append(s.steps, step) })
}

func (s *setup) bin() string { return s.root + "/usr/local/bin/hearth-agent" }

func TestInstallAndUpgrade(t *testing.T) {
	s := newSetup(t, installtest.Agent(t))
	registered := false
	s.req.Register = func(context.Context) error { registered = true; return nil }
	res, err := s.run(t)
	if err != nil {
		t.Fatalf("install: %v (steps %v)", err, s.steps)
	}
	if strings.Join(s.steps, " ") != strings.Join(Steps, " ") || !registered {
		t.Errorf("steps %v, registered %v", s.steps, registered)
	}
	if res.Arch != "amd64" && res.Arch != "arm64" || res.Init == "" || res.AgentVersion == "" {
		t.Errorf("result %+v", res)
	}
	// Trust on first use: the key the guest showed is reported for recording.
	if !res.HostKeyNew || res.HostKey != s.sshd.HostKey {
		t.Errorf("host key %q (new %v), sshd has %q", res.HostKey, res.HostKeyNew, s.sshd.HostKey)
	}
	got, err := os.ReadFile(s.bin())
	if err != nil || !bytes.Equal(got, s.agent) {
		t.Fatalf("installed binary differs from the agent (%v)", err)
	}
	if st, _ := os.Stat(s.bin()); st.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v", st.Mode().Perm())
	}
	if st, _ := os.Stat(s.root + "/etc/hearth-agent.conf"); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config missing or not 0600: %v", st)
	}
	if left, _ := filepath.Glob(s.root + "/*/*/*.new"); len(left) > 0 {
		t.Errorf("temporary files left in place: %v", left)
	}
	// Again, now pinned to the recorded key: an upgrade in place.
	s.req.HostKey = res.HostKey
	res2, err := s.run(t)
	if err != nil {
		t.Fatalf("second install: %v", err)
	}
	if res2.HostKeyNew || res2.SHA256 != res.SHA256 {
		t.Errorf("second run: %+v", res2)
	}
}

func TestHostKeyMismatch(t *testing.T) {
	s := newSetup(t, []byte("agent"))
	_, other := keyPair(t)
	s.req.HostKey = other
	_, err := s.run(t)
	var mm *HostKeyMismatchError
	var se *StepError
	if !errors.As(err, &mm) || !errors.As(err, &se) || se.Step != StepConnect {
		t.Fatalf("err = %v, want a host key mismatch at connect", err)
	}
	if !strings.Contains(err.Error(), "SHA256:") {
		t.Errorf("the error does not name the fingerprints: %v", err)
	}
	if entries, _ := os.ReadDir(s.root); len(entries) != 0 {
		t.Errorf("something was written despite the mismatch: %v", entries)
	}
}

func TestWrongCredentials(t *testing.T) {
	s := newSetup(t, []byte("agent"))
	stranger, _ := keyPair(t)
	for name, creds := range map[string]app.Credentials{
		"unknown key":    {User: "root", Port: s.req.Creds.Port, PrivateKey: []byte(stranger)},
		"wrong password": {User: "root", Port: s.req.Creds.Port, Password: "not-the-password"},
		"garbage key":    {User: "root", Port: s.req.Creds.Port, PrivateKey: []byte("-----BEGIN NOTHING-----")},
	} {
		s.req.Creds = creds
		_, err := s.run(t)
		var se *StepError
		if !errors.As(err, &se) || se.Step != StepConnect {
			t.Errorf("%s: %v, want a connect error", name, err)
			continue
		}
		if name != "garbage key" && !strings.Contains(err.Error(), "refused the credentials") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(s.bin()); !os.IsNotExist(err) {
		t.Error("a binary was installed without valid credentials")
	}
}

// TestDroppedMidUpload cuts the connection while the agent is uploading: the run fails at
// upload, and the previous binary stays in place untouched.
func TestDroppedMidUpload(t *testing.T) {
	big := bytes.Repeat([]byte("hearth-agent "), 800_000) // ~10 MB
	s := newSetup(t, big)
	os.MkdirAll(filepath.Dir(s.bin()), 0o755)
	os.WriteFile(s.bin(), []byte("the old agent"), 0o755)
	s.req.Host, s.req.Creds.Port = splitHostPort(t, installtest.CutProxy(t, s.sshd.Addr, 2<<20))
	_, err := s.run(t)
	var se *StepError
	if !errors.As(err, &se) || (se.Step != StepUpload && se.Step != StepVerify) {
		t.Fatalf("err = %v, want a failure while uploading", err)
	}
	if got, _ := os.ReadFile(s.bin()); string(got) != "the old agent" {
		t.Errorf("the installed binary changed: %d bytes", len(got))
	}
	if left, _ := filepath.Glob(filepath.Dir(s.bin()) + "/*.new"); len(left) > 0 {
		t.Errorf("half-installed files: %v", left)
	}
}

func TestEncryptedKeyRefused(t *testing.T) {
	s := newSetup(t, []byte("agent"))
	p := filepath.Join(t.TempDir(), "k")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-pass", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	pem, _ := os.ReadFile(p)
	s.req.Creds.PrivateKey = pem
	if _, err := s.run(t); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("encrypted key: %v", err)
	}
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return h, n
}

// keyPair makes a throwaway ed25519 key: OpenSSH PEM and authorized_keys line.
func keyPair(t *testing.T) (string, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "throwaway")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}
