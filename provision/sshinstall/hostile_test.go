package sshinstall

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"hearth/app"
	"hearth/internal/testkit/installtest"
	"hearth/internal/testkit/testenv"
)

func hostileRequest(t *testing.T, h *installtest.Hostile) Request {
	t.Helper()
	host, port, _ := net.SplitHostPort(h.Addr)
	p, _ := strconv.Atoi(port)
	return Request{Host: host, Creds: app.Credentials{User: "root", Port: p, Password: "anything"}, HostKey: h.HostKey}
}

// TestGuestFloods: a guest that answers with 64 MiB on stdout or stderr costs the manager
// a bounded amount of memory, and the error the operator sees is a short excerpt.
func TestGuestFloods(t *testing.T) {
	const flood = 64 << 20
	for _, c := range []struct {
		name string
		b    installtest.Behaviour
		want string
	}{
		{"stdout", installtest.FloodStdout, "more than 64 KiB of output"},
		{"stderr", installtest.FloodStderr, "flood of guest output"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := installtest.StartHostile(t, c.b, flood)
			in := &Installer{Agent: func(string) ([]byte, error) { return []byte("agent"), nil }}
			before := testenv.HeapInUse()
			var peak uint64
			done, sampled := make(chan struct{}), make(chan struct{})
			go func() { // sample the heap while the flood runs
				defer close(sampled)
				for {
					select {
					case <-done:
						return
					case <-time.After(20 * time.Millisecond):
						var m runtime.MemStats
						runtime.ReadMemStats(&m)
						peak = max(peak, m.HeapInuse)
					}
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err := in.Run(ctx, hostileRequest(t, h), nil)
			close(done)
			<-sampled
			var se *StepError
			if !errors.As(err, &se) || se.Step != StepDetect || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("install against a flooding guest: %v", err)
			}
			if len(err.Error()) > 2*maxExcerpt || !utf8.ValidString(err.Error()) {
				t.Errorf("the error is %d bytes (valid UTF-8: %v)", len(err.Error()), utf8.ValidString(err.Error()))
			}
			grew := int64(peak) - int64(before)
			t.Logf("flood of %d MiB on %s: heap in use %d KiB before, peak %d KiB; error %q", flood>>20, c.name, before>>10, peak>>10, err)
			if grew > 16<<20 {
				t.Errorf("the heap grew by %d MiB while the guest flooded", grew>>20)
			}
		})
	}
}

// TestGuestHangs: a guest that never answers a command holds the install no longer than
// its context, and the error says the time ran out.
func TestGuestHangs(t *testing.T) {
	h := installtest.StartHostile(t, installtest.Hang, 0)
	in := &Installer{Agent: func(string) ([]byte, error) { return []byte("agent"), nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := in.Run(ctx, hostileRequest(t, h), nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not finish in time") {
		t.Errorf("install against a hanging guest: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("the install returned %s after its 2 s context ended", took-2*time.Second)
	}
	if len(h.Commands()) == 0 {
		t.Error("the installer never ran a command")
	}
}

func TestCappedAndExcerpt(t *testing.T) {
	tail := &capped{max: 8, keepTail: true}
	for _, p := range []string{"abc", "defgh", "ijklmnopqrstuvwxyz", "12"} {
		tail.Write([]byte(p))
	}
	if tail.String() != "uvwxyz12" || !tail.dropped {
		t.Errorf("tail kept %q", tail.String())
	}
	full := 0
	head := &capped{max: 4, onFull: func() { full++ }}
	head.Write([]byte("abc"))
	head.Write([]byte("defg"))
	head.Write([]byte("h"))
	if head.String() != "abcd" || !head.overflow || full != 1 {
		t.Errorf("head kept %q, overflow %v, onFull %d", head.String(), head.overflow, full)
	}
	long := strings.Repeat("é", 400) + "\x1b[31mred\x00"
	ex := excerpt(long)
	if !utf8.ValidString(ex) || strings.ContainsAny(ex, "\x1b\x00") || !strings.HasPrefix(ex, "…") || !strings.HasSuffix(ex, "[31mred") {
		t.Errorf("excerpt %q", ex)
	}
}
