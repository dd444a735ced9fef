package install

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

	"hearth/app/testenv"
)

// testSSHD is a real OpenSSH server the test starts on loopback, with its own host key and
// an authorized key for root (the tests run as root, as CI does).
type testSSHD struct {
	addr      string
	hostKey   string // authorized_keys form
	client    ssh.Signer
	clientPEM []byte
}

func startSSHD(t *testing.T) *testSSHD {
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
	return &testSSHD{addr: addr, hostKey: f[0] + " " + f[1], client: signer, clientPEM: pem}
}

// cutProxy forwards one connection to target and cuts it after limit bytes from the client:
// a network that dies in the middle of an upload.
func cutProxy(t *testing.T, target string, limit int64) string {
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
