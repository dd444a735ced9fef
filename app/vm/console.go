package vm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
)

// Tail returns the last n lines of a text file, "" if it cannot be read.
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
	buf = bytes.TrimRight(buf, "\n")
	lines := strings.Split(strings.ToValidUTF8(string(buf), "?"), "\n")
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
