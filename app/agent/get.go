package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// The agent's GETs (/metrics every interval for every running VM, /health) go over
// connections of the client's own, one kept per guest, rather than through net/http's
// Transport: its two goroutines per connection and the hand-offs between them were most of
// the collector's CPU at 10,000 VMs. The rules are the Transport's: dial only the address
// given, one idle connection per guest (closed after IdleTimeout), a deadline for the
// whole exchange, no redirects, capped headers and body, and a kept connection the guest
// closed in the meantime is retried once on a new one.

// IdleTimeout is how long a kept connection to an agent may wait for its next request.
const IdleTimeout = 30 * time.Second

const maxHeaderBytes = 64 << 10

var getRequest = &http.Request{Method: http.MethodGet} // what http.ReadResponse reads an answer to

// kept is a connection to an agent with its reader; budget bounds what one answer may send.
type kept struct {
	*conn
	br       *bufio.Reader
	budget   int64
	lastUsed time.Time
}

func (k *kept) Read(p []byte) (int, error) {
	if k.budget <= 0 {
		return 0, errors.New("agent answer too large")
	}
	if int64(len(p)) > k.budget {
		p = p[:k.budget]
	}
	n, err := k.conn.Read(p)
	k.budget -= int64(n)
	return n, err
}

// take returns the kept connection to ip, if one is idle and alive.
func (c *Client) take(ip netip.Addr) *kept {
	c.mu.Lock()
	k := c.idle[ip]
	delete(c.idle, ip)
	c.mu.Unlock()
	if k != nil && (k.closed.Load() || time.Since(k.lastUsed) > IdleTimeout || !quiet(k.Conn)) {
		k.Close()
		return nil
	}
	return k
}

// quiet says that nothing waits to be read on an idle connection: bytes there are an
// answer to no question (they would be read as the next one's), and end of file is a guest
// that closed it. It peeks without reading or blocking, as net/http's idle read loop would
// notice them.
func quiet(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	still := false
	if err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		still = n <= 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait
	}); err != nil {
		return false
	}
	return still
}

// keep makes k the idle connection to its guest, and closes what waited too long.
func (c *Client) keep(k *kept) {
	k.lastUsed = time.Now()
	var doomed []*kept
	c.mu.Lock()
	if old := c.idle[k.ip]; old != nil {
		doomed = append(doomed, old)
	}
	c.idle[k.ip] = k
	if time.Since(c.swept) > IdleTimeout {
		c.swept = time.Now()
		for ip, o := range c.idle {
			if time.Since(o.lastUsed) > IdleTimeout {
				delete(c.idle, ip)
				doomed = append(doomed, o)
			}
		}
	}
	c.mu.Unlock()
	for _, o := range doomed {
		o.Close()
	}
}

// get fetches path from the agent at ip and returns the capped body of a 200.
func (c *Client) get(ctx context.Context, ip netip.Addr, path, token string) ([]byte, error) {
	if strings.ContainsAny(token, "\r\n") || strings.ContainsAny(path, "\r\n ") {
		return nil, errors.New("agent request: token or path with a line break")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if k := c.take(ip); k != nil {
		body, err, retry := c.exchange(ctx, k, path, token)
		if !retry {
			return body, err
		}
	}
	d := net.Dialer{Timeout: c.timeout}
	nc, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(c.port)).String())
	if err != nil {
		return nil, err
	}
	k := &kept{conn: c.track(ip, nc)}
	k.br = bufio.NewReaderSize(k, 4096)
	body, err, _ := c.exchange(ctx, k, path, token)
	return body, err
}

// exchange sends one GET on k and reads the answer. retry says that k was a kept
// connection the guest had closed before reading it (nothing was answered): the caller
// asks again on a new one, as net/http does.
func (c *Client) exchange(ctx context.Context, k *kept, path, token string) (body []byte, err error, retry bool) {
	reused := !k.lastUsed.IsZero()
	deadline, _ := ctx.Deadline()
	k.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { k.SetDeadline(time.Unix(1, 0)) }) // cancelled: unblock at once
	defer stop()
	reusable := false
	defer func() {
		if reusable && stop() && k.br.Buffered() == 0 {
			k.SetDeadline(time.Time{})
			c.keep(k)
		} else {
			k.Close()
		}
	}()
	k.budget = maxHeaderBytes
	var req strings.Builder
	req.Grow(160 + len(token))
	req.WriteString("GET " + path + " HTTP/1.1\r\nHost: " + netip.AddrPortFrom(k.ip, uint16(c.port)).String() +
		"\r\nUser-Agent: hearth\r\nAccept: application/json\r\n")
	if token != "" {
		req.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(k.conn, req.String()); err != nil {
		return nil, c.timedOut(ctx, err), reused && gone(err)
	}
	resp, err := http.ReadResponse(k.br, getRequest)
	if err != nil {
		return nil, c.timedOut(ctx, err), reused && k.budget == maxHeaderBytes && gone(err)
	}
	k.budget = c.bodyCap + maxHeaderBytes // room for a chunked body's framing; the cap is checked below
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, fmt.Errorf("the agent answered with a redirect (%s)", resp.Status), false
	case resp.StatusCode != http.StatusOK:
		k.budget = 4096
		_, err := io.Copy(io.Discard, resp.Body)
		reusable = err == nil && !resp.Close // a refusal read to its end leaves the connection good
		return nil, fmt.Errorf("agent answered %s", resp.Status), false
	}
	body, err = io.ReadAll(resp.Body)
	switch {
	case int64(len(body)) > c.bodyCap || (err != nil && k.budget <= 0):
		return nil, fmt.Errorf("agent answer larger than %d bytes", c.bodyCap), false
	case err != nil:
		return nil, fmt.Errorf("read agent answer: %w", c.timedOut(ctx, err)), false
	}
	reusable = !resp.Close
	return body, nil, false
}

// timedOut names a deadline as the timeout it is.
func (c *Client) timedOut(ctx context.Context, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
		return fmt.Errorf("%w (Client.Timeout %s exceeded)", context.DeadlineExceeded, c.timeout)
	}
	return err
}

// gone says err is what a kept connection the other end closed gives.
func gone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
