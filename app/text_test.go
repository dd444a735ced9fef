package app

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg…"},
		{strings.Repeat("é", 40), 64, strings.Repeat("é", 30) + "…"}, // 2-byte runes: 30×2 + 3
		{strings.Repeat("€", 30), 64, strings.Repeat("€", 20) + "…"}, // 3-byte runes, cut before a split
		{"v1.0\xff\xfe", 64, "v1.0\uFFFD\uFFFD"},                     // invalid bytes replaced
		{"ab", 2, "ab"},
		{"abc", 2, ""},
	} {
		got := Clip(c.in, c.n)
		if got != c.want || len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q (%d bytes), want %q", c.in, c.n, got, len(got), c.want)
		}
	}
}

func FuzzClip(f *testing.F) {
	f.Add("hearth-agent 1.0", 64)
	f.Add(strings.Repeat("日本", 40), 64)
	f.Add("\xf0\x9f\x98", 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		got := Clip(s, n)
		if len(got) > n || !utf8.ValidString(got) {
			t.Fatalf("Clip(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && len(s) <= n && got != s {
			t.Fatalf("Clip changed a text that fits: %q → %q", s, got)
		}
	})
}
