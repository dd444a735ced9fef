package installtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"hearth/internal/testkit/testenv"

	"golang.org/x/crypto/ssh"
)

// Behaviour is what a hostile guest does when asked to run a command.
type Behaviour int

// What a hostile guest can do.
const (
	FloodStdout Behaviour = iota // answers every command with Flood bytes on stdout, then exits 0
	FloodStderr                  // the same on stderr, then exits 1
	Hang                         // never answers: no output, no exit status, the channel stays open
)

// Hostile is an SSH server, written with golang.org/x/crypto/ssh, that lets anyone in and
// then misbehaves on every command as Behaviour says: what a compromised or broken guest
// can do to the installer.
type Hostile struct {
	Addr    string
	HostKey string // authorized_keys form
	// Commands counts the exec requests it received.
	mu       sync.Mutex
	commands []string
}

// Commands returns the commands the installer ran.
func (h *Hostile) Commands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.commands...)
}

// StartHostile starts a hostile SSH server on loopback; it stops at cleanup.
func StartHostile(t *testing.T, b Behaviour, flood int64) *Hostile {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
		PasswordCallback:  func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, nil },
	}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &Hostile{Addr: l.Addr().String(), HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}
	testenv.Serve(t, l, func(_ int, c net.Conn) { h.serve(c, cfg, b, flood) })
	return h
}

func (h *Hostile) serve(c net.Conn, cfg *ssh.ServerConfig, b Behaviour, flood int64) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	gone := make(chan struct{}) // closed when the client hangs up
	go func() { sc.Wait(); close(gone) }()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for r := range creqs {
				if r.Type != "exec" {
					r.Reply(false, nil)
					continue
				}
				var cmd struct{ Command string }
				ssh.Unmarshal(r.Payload, &cmd)
				h.mu.Lock()
				h.commands = append(h.commands, cmd.Command)
				h.mu.Unlock()
				r.Reply(true, nil)
				switch b {
				case Hang:
					io.Copy(io.Discard, ch) // stdin, until its EOF
					<-gone                  // then nothing, until the client gives up
					return
				case FloodStdout, FloodStderr:
					var w io.Writer = ch
					status := uint32(0)
					if b == FloodStderr {
						w, status = ch.Stderr(), 1
					}
					chunk := []byte(strings.Repeat("flood of guest output\n", 1<<12))
					for sent := int64(0); sent < flood; sent += int64(len(chunk)) {
						if _, err := w.Write(chunk); err != nil {
							return
						}
					}
					st := make([]byte, 4)
					binary.BigEndian.PutUint32(st, status)
					ch.SendRequest("exit-status", false, st)
					return
				}
			}
		}()
	}
}
