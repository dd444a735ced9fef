package vm

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTailIsPlainText: what a console prints through a terminal (colours, cursor moves,
// titles, CR LF) is shown as the text it means.
func TestTailIsPlainText(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	raw := "old line\r\n\x1b[0;32m  OK  \x1b[0m] Started \x1b[1mhearth-agent.service\x1b[0m.\r\n" +
		"\x1b]0;debian@vm\x07login: \x1b[?25h\x1b[K\x07\x00\r\n" +
		"progress 10%\rprogress 100%\n"
	os.WriteFile(p, []byte(raw), 0o644)
	want := "  OK  ] Started hearth-agent.service.\nlogin: \nprogress 10%\nprogress 100%"
	if got := Tail(p, 4); got != want {
		t.Errorf("Tail = %q, want %q", got, want)
	}
	if got := PlainText("\x1b(Bplain\x1bc"); got != "plain" {
		t.Errorf("two-byte escapes: %q", got)
	}
}

func FuzzPlainText(f *testing.F) {
	f.Add("\x1b[31mred\x1b[0m\r\n")
	f.Add("\x1b]0;title\x07x\x1b")
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range PlainText(s) {
			if r == 0x1b || (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f {
				t.Fatalf("PlainText(%q) keeps %U", s, r)
			}
		}
	})
}
