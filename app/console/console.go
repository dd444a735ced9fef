// Package console holds a VM's serial console for the manager: one connection to the
// console socket the hypervisor serves in the VM's run directory, the output appended to
// console.log (rotated past a size, the newest kept), the last bytes kept for viewers who
// join, and input from any viewer written to the guest. The socket outlives the manager: a
// manager that restarts opens a new Hub on it and carries on.
package console

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Options tune a Hub; zero values take the defaults.
type Options struct {
	LogMax  int64 // rotate console.log past this many bytes (default 1 MiB); console.log.1 keeps the one before
	History int   // bytes a viewer gets first when it joins (default 64 KiB)
	// Backlog is how many bytes a viewer may fall behind before it is cut off (default
	// 1 MiB): a slow viewer never holds up the guest or the others.
	Backlog int
}

// ErrNotConnected: the hub has no connection to the console right now (the VM is starting,
// stopping, or gone).
var ErrNotConnected = errors.New("the console is not connected")

// Hub is one VM's console.
type Hub struct {
	dial    func() (io.ReadWriteCloser, error)
	logPath string
	opts    Options

	mu      sync.Mutex
	conn    io.ReadWriteCloser
	hist    []byte // the newest opts.History bytes of output
	subs    map[*Viewer]struct{}
	log     *os.File
	logSize int64
	closed  bool
	changed chan struct{} // closed and replaced when the connection comes or goes
	done    chan struct{}
}

// Viewer is one subscriber. Output waits for it in one buffer (a serial port delivers a
// byte or a few at a time: they are taken together); Ready signals that there is some, or
// that the viewer ended.
type Viewer struct {
	hub     *Hub
	ready   chan struct{}
	pending []byte
	ended   bool
	dropped bool
}

// Ready is signalled when output is pending or the viewer has ended: call Take.
func (v *Viewer) Ready() <-chan struct{} { return v.ready }

// Take returns the pending output, oldest first, and false once the viewer has ended and
// nothing is left (Dropped then says whether it fell behind).
func (v *Viewer) Take() ([]byte, bool) {
	v.hub.mu.Lock()
	defer v.hub.mu.Unlock()
	b := v.pending
	v.pending = nil
	return b, len(b) > 0 || !v.ended
}

// Next waits for output and returns it; false once the viewer has ended.
func (v *Viewer) Next() ([]byte, bool) {
	for {
		b, open := v.Take()
		if len(b) > 0 || !open {
			return b, open
		}
		<-v.ready
	}
}

func (v *Viewer) signal() {
	select {
	case v.ready <- struct{}{}:
	default:
	}
}

// end ends the viewer (the hub's lock held).
func (v *Viewer) end(dropped bool) {
	v.ended, v.dropped = true, dropped
	delete(v.hub.subs, v)
	v.signal()
}

// Open starts holding the console served on the unix socket sock (QEMU's socket chardev),
// appending its output to logPath. It dials until the socket answers, and again whenever
// the connection ends, until Close.
func Open(sock, logPath string, opts Options) *Hub {
	return OpenDial(func() (io.ReadWriteCloser, error) { return net.Dial("unix", sock) }, logPath, opts)
}

// OpenDial is Open for any way of reaching the console: dial is called until it succeeds,
// and again whenever the connection it gave ends.
func OpenDial(dial func() (io.ReadWriteCloser, error), logPath string, opts Options) *Hub {
	if opts.LogMax <= 0 {
		opts.LogMax = 1 << 20
	}
	if opts.History <= 0 {
		opts.History = 64 << 10
	}
	if opts.Backlog <= 0 {
		opts.Backlog = 1 << 20
	}
	h := &Hub{dial: dial, logPath: logPath, opts: opts, subs: map[*Viewer]struct{}{},
		changed: make(chan struct{}), done: make(chan struct{})}
	h.hist = tail(logPath, opts.History) // what the last manager saw, for the first viewers
	go h.run()
	return h
}

// tail is the last n bytes of a file ("" when it cannot be read).
func tail(path string, n int) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-int64(n), 0)
	b := make([]byte, st.Size()-off)
	k, _ := f.ReadAt(b, off)
	return b[:k]
}

func (h *Hub) run() {
	defer close(h.done)
	wait := 50 * time.Millisecond
	for {
		conn, err := h.dial()
		if err != nil {
			if !h.sleep(wait) {
				return
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 50 * time.Millisecond
		if !h.setConn(conn) {
			conn.Close()
			return
		}
		h.pump(conn)
		h.setConn(nil)
		if !h.sleep(wait) {
			return
		}
	}
}

// sleep waits d, or returns false at once when the hub is closed.
func (h *Hub) sleep(d time.Duration) bool {
	h.mu.Lock()
	closed, ch := h.closed, h.changed
	h.mu.Unlock()
	if closed {
		return false
	}
	select {
	case <-time.After(d):
	case <-ch:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.closed
}

func (h *Hub) setConn(c io.ReadWriteCloser) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed && c != nil {
		return false
	}
	h.conn = c
	close(h.changed)
	h.changed = make(chan struct{})
	return true
}

func (h *Hub) pump(conn io.ReadWriteCloser) {
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			h.output(buf[:n])
		}
		if err != nil {
			conn.Close()
			return
		}
	}
}

// output records a chunk: the log, the history, every viewer.
func (h *Hub) output(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.appendLog(p)
	h.hist = append(h.hist, p...)
	if over := len(h.hist) - h.opts.History; over > 0 {
		h.hist = append(h.hist[:0], h.hist[over:]...)
	}
	for v := range h.subs {
		if len(v.pending)+len(p) > h.opts.Backlog { // too far behind: cut it off rather than wait
			v.pending = nil
			v.end(true)
			continue
		}
		v.pending = append(v.pending, p...)
		v.signal()
	}
}

// appendLog writes p to console.log, rotating it first when p would take it past LogMax.
// A log that cannot be written costs the log, never the console.
func (h *Hub) appendLog(p []byte) {
	if int64(len(p)) > h.opts.LogMax { // one chunk larger than the bound: its newest part
		p = p[int64(len(p))-h.opts.LogMax:]
	}
	if h.log != nil && h.logSize+int64(len(p)) > h.opts.LogMax {
		h.log.Close()
		h.log = nil
		os.Rename(h.logPath, h.logPath+".1") //nolint:errcheck // a failed rotation truncates below
		os.Remove(h.logPath)
	}
	if h.log == nil {
		f, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return
		}
		st, _ := f.Stat()
		h.log, h.logSize = f, 0
		if st != nil {
			h.logSize = st.Size()
		}
		if h.logSize+int64(len(p)) > h.opts.LogMax && h.logSize > 0 { // a log left over from before
			f.Close()
			h.log = nil
			os.Rename(h.logPath, h.logPath+".1") //nolint:errcheck
			h.appendLog(p)
			return
		}
	}
	n, _ := h.log.Write(p)
	h.logSize += int64(n)
}

// Join subscribes a viewer and returns the history it should show first.
func (h *Hub) Join() (*Viewer, []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := &Viewer{hub: h, ready: make(chan struct{}, 1)}
	if h.closed {
		v.ended = true
		v.signal()
	} else {
		h.subs[v] = struct{}{}
	}
	return v, append([]byte(nil), h.hist...)
}

// Leave unsubscribes the viewer.
func (v *Viewer) Leave() {
	v.hub.mu.Lock()
	defer v.hub.mu.Unlock()
	if !v.ended {
		v.end(false)
	}
}

// Dropped reports whether the viewer was cut off for falling behind.
func (v *Viewer) Dropped() bool {
	v.hub.mu.Lock()
	defer v.hub.mu.Unlock()
	return v.dropped
}

// Viewers is how many viewers are joined.
func (h *Hub) Viewers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Connected reports whether the hub holds the console now, and a channel closed at the next
// change.
func (h *Hub) Connected() (bool, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn != nil, h.changed
}

// WaitConnected waits up to d for the connection.
func (h *Hub) WaitConnected(d time.Duration) bool {
	deadline := time.After(d)
	for {
		ok, ch := h.Connected()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// Write sends input to the guest.
func (h *Hub) Write(p []byte) (int, error) {
	h.mu.Lock()
	c := h.conn
	h.mu.Unlock()
	if c == nil {
		return 0, ErrNotConnected
	}
	if d, ok := c.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // not every pipe can
	}
	return c.Write(p)
}

// Close lets go of the console (the VM keeps running; its socket stays) and ends every
// viewer. It waits for the output read so far to be logged.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.done
		return
	}
	h.closed = true
	if h.conn != nil {
		h.conn.Close()
	}
	for v := range h.subs {
		v.end(false)
	}
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	<-h.done
	h.mu.Lock()
	if h.log != nil {
		h.log.Close()
		h.log = nil
	}
	h.mu.Unlock()
}

// CloseAfter closes the hub once done is closed (the hypervisor exited) and the hub has
// read what was left on the connection, or a second later.
func (h *Hub) CloseAfter(done <-chan struct{}) {
	go func() {
		<-done
		deadline := time.Now().Add(time.Second)
		for ok, ch := h.Connected(); ok && time.Now().Before(deadline); ok, ch = h.Connected() {
			select {
			case <-ch:
			case <-time.After(time.Until(deadline)):
			}
		}
		h.Close()
	}()
}

// Done is closed once the hub has stopped.
func (h *Hub) Done() <-chan struct{} { return h.done }

var _ io.Writer = (*Hub)(nil)
