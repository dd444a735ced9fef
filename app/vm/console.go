package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"hearth/app"
	"hearth/app/console"
	"hearth/app/hypervisor"
)

// Tail returns the last n lines of a text file as plain text, "" if it cannot be read: a
// serial console is full of terminal escapes (colours, cursor moves) that a page or an
// error message would show raw.
func Tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const window = 16 << 10
	off := st.Size() - window
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	text := strings.TrimRight(PlainText(strings.ToValidUTF8(string(buf), "?")), "\n")
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ConsoleTail returns the last n lines of the VM's serial console.
func (s *Service) ConsoleTail(id string, n int) string {
	if s.rt == nil {
		return ""
	}
	return Tail(s.files(id).Console(), n)
}

// Console returns the running VM's serial console: ENOTFOUND, ECONFLICT when the VM is not
// running, EUNAVAILABLE when its driver gives no interactive console.
func (s *Service) Console(ctx context.Context, id string) (*console.Hub, error) {
	v, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !v.State.Live() { // a paused guest's console stays: it prints again once resumed
		return nil, app.Errorf(app.ECONFLICT, "the VM is %s: its console is there while it runs", v.State)
	}
	if h := s.hub(id); h != nil {
		return h, nil
	}
	return nil, app.Errorf(app.EUNAVAILABLE, "this VM's hypervisor (%s) gives no interactive console", v.RunningDriver)
}

// Interactive reports whether the manager holds the VM's console now (it runs, and its
// driver gives one): for a page already holding the VM's record.
func (s *Service) Interactive(id string) bool { return s.hub(id) != nil }

func (s *Service) hub(id string) *console.Hub {
	if c, ok := s.Machine(id).(hypervisor.Consoler); ok {
		return c.Console()
	}
	return nil
}

// ConsoleOpened records that by opened the VM's console; ConsoleClosed, for how long.
func (s *Service) ConsoleOpened(ctx context.Context, id string, by app.Actor) error {
	return s.db.Audit(ctx, *entry(by, app.AuditConsole, id, "opened the console"))
}

// ConsoleClosed records the end of a console session that opened at since, and why.
func (s *Service) ConsoleClosed(ctx context.Context, id string, by app.Actor, since time.Time, why string) error {
	return s.db.Audit(ctx, *entry(by, app.AuditConsole, id, fmt.Sprintf("closed the console after %s (%s)", time.Since(since).Round(time.Second), why)))
}

// ansi matches terminal escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL or ST), and
// the rest (ESC, intermediate bytes, a final byte: ESC ( B, ESC c, ESC 7).
var ansi = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]`)

// PlainText removes terminal escapes and control characters but newlines and tabs; a
// carriage return before a newline goes, one on its own ends the line as a terminal would.
func PlainText(s string) string {
	s = ansi.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\r':
			return '\n'
		case r == '\n' || r == '\t':
			return r
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return -1
		}
		return r
	}, s)
}
