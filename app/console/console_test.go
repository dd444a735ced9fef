package console_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/app/console"
	"hearth/internal/testkit/consoletest"
)

// serial is the hypervisor's side of a console socket: it accepts one connection at a
// time, as QEMU's socket chardev does.
type serial struct {
	t    *testing.T
	l    net.Listener
	conn chan net.Conn
}

func listen(t *testing.T, sock string) *serial {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &serial{t: t, l: l, conn: make(chan net.Conn, 1)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.conn <- c
		}
	}()
	t.Cleanup(func() { l.Close() })
	return s
}

func (s *serial) accept() net.Conn {
	s.t.Helper()
	select {
	case c := <-s.conn:
		s.t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		s.t.Fatal("the hub never connected")
		return nil
	}
}

func read(t *testing.T, v *console.Viewer, want string) string {
	t.Helper()
	return string(consoletest.Expect(t, v, want, 5*time.Second))
}

// TestHubShares: two viewers see the same bytes, input from either reaches the guest, the
// log has everything, and a viewer who joins later gets the history first.
func TestHubShares(t *testing.T) {
	dir := t.TempDir()
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	s := listen(t, sock)
	h := console.Open(sock, log, console.Options{})
	defer h.Close()
	guest := s.accept()
	if !h.WaitConnected(5 * time.Second) {
		t.Fatal("not connected")
	}
	a, _ := h.Join()
	b, _ := h.Join()
	guest.Write([]byte("login: "))
	if read(t, a, "login: ") != read(t, b, "login: ") {
		t.Error("the viewers saw different bytes")
	}
	h.Write([]byte("root\n"))
	buf := make([]byte, 16)
	guest.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := guest.Read(buf); string(buf[:n]) != "root\n" {
		t.Errorf("the guest got %q", buf[:n])
	}
	guest.Write([]byte("# "))
	read(t, a, "# ")
	c, hist := h.Join()
	defer c.Leave()
	if string(hist) != "login: # " {
		t.Errorf("history for a late viewer: %q", hist)
	}
	a.Leave()
	b.Leave()
	if n := h.Viewers(); n != 1 {
		t.Errorf("%d viewers after two left", n)
	}
	if got, _ := os.ReadFile(log); string(got) != "login: # " {
		t.Errorf("console.log: %q", got)
	}
}

// TestHubSurvives: the hub reconnects when the console goes away and comes back (the
// hypervisor restarted), and a new hub after a manager restart starts with the last
// history from console.log.
func TestHubSurvives(t *testing.T) {
	dir := t.TempDir()
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	s := listen(t, sock)
	h := console.Open(sock, log, console.Options{})
	guest := s.accept()
	v, _ := h.Join()
	guest.Write([]byte("first boot\n"))
	read(t, v, "first boot")
	guest.Close()
	guest = s.accept()
	h.WaitConnected(5 * time.Second)
	guest.Write([]byte("second\n"))
	read(t, v, "second")
	h.Close()
	if _, open := v.Next(); open {
		t.Error("a viewer of a closed hub is still open")
	}

	h2 := console.Open(sock, log, console.Options{})
	defer h2.Close()
	guest = s.accept()
	w, hist := h2.Join()
	if string(hist) != "first boot\nsecond\n" {
		t.Errorf("history after a manager restart: %q", hist)
	}
	guest.Write([]byte("third\n"))
	read(t, w, "third")
}

// TestHubBounds: console.log rotates past LogMax keeping the newest, history stays within
// its size, and a viewer that does not read is cut off without holding up the others.
func TestHubBounds(t *testing.T) {
	dir := t.TempDir()
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	s := listen(t, sock)
	h := console.Open(sock, log, console.Options{LogMax: 10 << 10, History: 1 << 10, Backlog: 8 << 10})
	defer h.Close()
	guest := s.accept()
	h.WaitConnected(5 * time.Second)
	slow, _ := h.Join()
	fast, _ := h.Join()
	// 30 KB written, in lock step with the reading viewer: far more than the 8 KiB the idle
	// viewer may fall behind, and three times the log's bound.
	line := strings.Repeat("x", 99) + "\n"
	for i := 0; i < 300; i++ {
		guest.Write([]byte(line))
		read(t, fast, "\n")
	}
	guest.Write([]byte("END\n"))
	read(t, fast, "END")
	deadline := time.Now().Add(5 * time.Second)
	for !slow.Dropped() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !slow.Dropped() {
		t.Error("the viewer that never read was not cut off")
	}
	_, hist := h.Join()
	if len(hist) > 1<<10 || !strings.HasSuffix(string(hist), "END\n") {
		t.Errorf("history of %d bytes ending %q", len(hist), hist[max(0, len(hist)-8):])
	}
	st, err := os.Stat(log)
	old, err1 := os.Stat(log + ".1")
	if err != nil || err1 != nil || st.Size() > 10<<10 || old.Size() > 10<<10 {
		t.Fatalf("log %v (%v), rotated %v (%v)", st, err, old, err1)
	}
	if b, _ := os.ReadFile(log); !strings.HasSuffix(string(b), "END\n") {
		t.Error("console.log does not end with the newest output")
	}
}

// TestWriteWithoutConsole: input while nothing is connected is refused, not lost silently.
func TestWriteWithoutConsole(t *testing.T) {
	dir := t.TempDir()
	h := console.Open(filepath.Join(dir, "nothing.sock"), filepath.Join(dir, "console.log"), console.Options{})
	defer h.Close()
	if _, err := h.Write([]byte("x")); err != console.ErrNotConnected {
		t.Errorf("write with no console: %v", err)
	}
}
