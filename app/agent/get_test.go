package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/guest/collect"
	"hearth/guest/server"
	"hearth/internal/testkit/testenv"
)

const healthBody = `{"status":"ok","version":"9.9"}`

// rawAgent is an "agent" that speaks HTTP by hand on loopback: serve gets each accepted
// connection with its number (from 1) and answers as it likes. It returns the client.
func rawAgent(t *testing.T, serve func(n int, c net.Conn, r *bufio.Reader)) (*Client, func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := testenv.Serve(t, l, func(n int, c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		serve(n, c, bufio.NewReader(c))
	})
	cl := New(Options{Port: l.Addr().(*net.TCPAddr).Port, Timeout: time.Second, BodyCap: 4096})
	return cl, accepted
}

// readRequest reads one request's head, failing the test on anything but a GET.
func readRequest(t *testing.T, r *bufio.Reader) bool {
	req, err := http.ReadRequest(r)
	if err != nil {
		return false
	}
	if req.Method != http.MethodGet {
		t.Errorf("the client sent %s", req.Method)
	}
	return true
}

func answer(c net.Conn, extra, body string) {
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(body), body)
}

var lo = netip.MustParseAddr("127.0.0.1")

// TestKeptConnection: a real agent handler is asked on one connection, again and again,
// with the token; another client does not share it.
func TestKeptConnection(t *testing.T) {
	sampler := collect.NewSampler(collect.NewReader(), time.Second, "t")
	sampler.Sample()
	var mu sync.Mutex
	conns := 0
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: server.New(sampler, server.Options{Token: "hag_good_token_0123456789", Version: "t"}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				conns++
				mu.Unlock()
			}
		}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	cl := New(Options{Port: l.Addr().(*net.TCPAddr).Port, Timeout: time.Second})
	for i := 0; i < 5; i++ {
		if _, err := cl.Metrics(context.Background(), lo, "hag_good_token_0123456789"); err != nil {
			t.Fatalf("poll %d: %v", i, err)
		}
	}
	if _, err := cl.Metrics(context.Background(), lo, "hag_wrong_token_0123456789"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a wrong token: %v", err)
	}
	if v, err := cl.Health(context.Background(), lo); err != nil || v != "t" {
		t.Errorf("health on the kept connection: %q %v", v, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("7 requests took %d connections, want 1", conns)
	}
}

// TestKeptConnectionClosedByTheGuest: a guest that closed the kept connection after its
// answer (without saying so) is asked again on a new one, and the caller sees an answer.
func TestKeptConnectionClosedByTheGuest(t *testing.T) {
	cl, accepted := rawAgent(t, func(n int, c net.Conn, r *bufio.Reader) {
		if readRequest(t, r) {
			answer(c, "", healthBody)
		}
	})
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // the guest's close has arrived
		}
		if v, err := cl.Health(context.Background(), lo); err != nil || v != "9.9" {
			t.Fatalf("ask %d: %q %v", i, v, err)
		}
	}
	if got := accepted(); got != 3 {
		t.Errorf("connections: %d, want 3", got)
	}
}

// TestHostileAnswers: what a hostile guest can send over the hand-written exchange is
// refused with a reason, in time, and leaves no connection to be read again (but for a
// whole refusal, which is an answer like any other).
func TestHostileAnswers(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve func(c net.Conn)
		want  string
		kept  bool // a whole answer, if not a 200, leaves the connection good
	}{
		{"endless headers", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\n"))
			for i := 0; i < 1<<16; i++ {
				if _, err := fmt.Fprintf(c, "X-%d: %s\r\n", i, strings.Repeat("a", 100)); err != nil {
					return
				}
			}
		}, "too large", false},
		{"body past the cap", func(c net.Conn) { answer(c, "", `{"pad":"`+strings.Repeat("x", 8192)+`"}`) }, "larger than 4096", false},
		{"endless chunked body", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
			for i := 0; i < 1<<12; i++ {
				if _, err := fmt.Fprintf(c, "400\r\n%s\r\n", strings.Repeat("x", 1024)); err != nil {
					return
				}
			}
		}, "larger than 4096", false},
		{"redirect", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/health\r\nContent-Length: 0\r\n\r\n"))
		}, "redirect", false},
		{"not HTTP", func(c net.Conn) { c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n")) }, "malformed HTTP", false},
		{"silent", func(c net.Conn) { io.Copy(io.Discard, c) }, "deadline exceeded", false},
		{"half an answer", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"status\""))
		}, "EOF", false},
		{"a 500", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!"))
		}, "500", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, _ := rawAgent(t, func(n int, conn net.Conn, r *bufio.Reader) {
				if readRequest(t, r) {
					c.serve(conn)
				}
			})
			start := time.Now()
			v, err := cl.Health(context.Background(), lo)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Health = %q, %v; want an error with %q", v, err, c.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("it took %s with a 1 s timeout", took)
			}
			cl.mu.Lock()
			idle := len(cl.idle)
			cl.mu.Unlock()
			if idle != map[bool]int{true: 1}[c.kept] {
				t.Errorf("after %s, %d connections kept", c.name, idle)
			}
		})
	}
}

// TestExtraBytesAreNotReadAsTheNextAnswer: a guest that sends more than its answer (a
// second answer ahead of the question) does not get to answer the next request with it.
func TestExtraBytesAreNotReadAsTheNextAnswer(t *testing.T) {
	cl, accepted := rawAgent(t, func(n int, c net.Conn, r *bufio.Reader) {
		for readRequest(t, r) {
			if n == 1 {
				answer(c, "", healthBody)
				answer(c, "", `{"status":"ok","version":"planted"}`)
				continue
			}
			answer(c, "", healthBody)
		}
	})
	cl.Health(context.Background(), lo)
	time.Sleep(50 * time.Millisecond)
	if v, err := cl.Health(context.Background(), lo); err != nil || v != "9.9" {
		t.Errorf("the second ask: %q %v", v, err)
	}
	if got := accepted(); got != 2 {
		t.Errorf("connections: %d, want 2 (the first not reused)", got)
	}
}

// TestCancelledAsk: a caller's cancelled context ends the exchange at once.
func TestCancelledAsk(t *testing.T) {
	cl, _ := rawAgent(t, func(n int, c net.Conn, r *bufio.Reader) { readRequest(t, r); io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := cl.Health(ctx, lo); err == nil {
		t.Error("a cancelled ask answered")
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("the cancelled ask took %s (the timeout is 1 s)", took)
	}
}

// FuzzAnswer: whatever bytes a guest answers with, the exchange ends (no panic, no hang)
// with an error or a body within the cap, and keeps the connection only after a whole 200
// or refusal with nothing beyond it.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n"))
	f.Add([]byte("HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		cl := New(Options{Timeout: time.Second, BodyCap: 256})
		client, guest := net.Pipe()
		go func() {
			defer guest.Close()
			guest.SetDeadline(time.Now().Add(2 * time.Second))
			if readRequest(t, bufio.NewReader(guest)) {
				guest.Write(answer)
			}
		}()
		k := &kept{conn: cl.track(lo, client)}
		k.br = bufio.NewReaderSize(k, 4096)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		body, err, _ := cl.exchange(ctx, k, "/health", "")
		if err == nil && len(body) > 256 {
			t.Fatalf("a body of %d bytes past the cap of 256", len(body))
		}
		if err != nil && body != nil {
			t.Fatalf("an error (%v) with a body", err)
		}
		k.Close()
	})
}
