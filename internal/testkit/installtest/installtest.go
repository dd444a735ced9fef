// Package installtest holds what agent-install tests need: a real OpenSSH server on
// loopback (its own host key, config and an authorized client key for root), a connection
// cutter, and the real agent binary.
package installtest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"hearth/internal/testkit/testenv"
)

// Server is a running sshd that accepts Client for root (the tests run as root, as CI does).
type Server struct {
	Addr      string     // host:port on loopback
	HostKey   string     // its host key, authorized_keys form
	Client    ssh.Signer // a key it accepts for root
	ClientPEM []byte
}

// Start starts sshd; it is stopped at cleanup. Without sshd or root the test is skipped
// (or fails under HEARTH_REQUIRE_ALL).
func Start(t *testing.T) *Server {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/sshd"); err2 == nil {
			sshd = "/usr/sbin/sshd"
		} else {
			testenv.Missing(t, "OpenSSH server (sshd)", err)
		}
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (sshd must run as root to log users in)", fmt.Sprintf("euid %d", os.Geteuid()))
	}
	dir := t.TempDir()
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-"+k, "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	clientPub, _ := os.ReadFile(filepath.Join(dir, "client.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), clientPub, 0o600)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`Port %s
ListenAddress %s
HostKey %s/host
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, port, host, dir, dir, dir)
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(conf), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	logf, _ := os.Create(filepath.Join(dir, "sshd.log"))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hostPub, _ := os.ReadFile(filepath.Join(dir, "host.pub"))
	pem, _ := os.ReadFile(filepath.Join(dir, "client"))
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(hostPub))
	return &Server{Addr: addr, HostKey: f[0] + " " + f[1], Client: signer, ClientPEM: pem}
}

// CutProxy forwards one connection to target and cuts it after limit bytes from the client:
// a network that dies in the middle of an upload.
func CutProxy(t *testing.T, target string, limit int64) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		var once sync.Once
		closeBoth := func() { once.Do(func() { c.Close(); s.Close() }) }
		go func() { io.Copy(c, s); closeBoth() }()
		var n atomic.Int64
		buf := make([]byte, 32<<10)
		for {
			k, err := c.Read(buf)
			if k > 0 {
				if n.Add(int64(k)) > limit {
					closeBoth()
					return
				}
				if _, werr := s.Write(buf[:k]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		closeBoth()
	}()
	return l.Addr().String()
}

var agent struct {
	sync.Mutex
	path string
}

// Agent builds hearth-agent once per test binary and returns it: installs start it for
// real and wait for its /health.
func Agent(t *testing.T) []byte {
	t.Helper()
	agent.Lock()
	defer agent.Unlock()
	if agent.path == "" {
		p := filepath.Join(os.TempDir(), fmt.Sprintf("hearth-agent-installtest-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", p, "hearth/guest/cmd/hearth-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build hearth-agent: %v\n%s", err, out)
		}
		agent.path = p
	}
	b, err := os.ReadFile(agent.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
