package app

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clip bounds a text that came from outside (a guest, a client) to at most n bytes of valid
// UTF-8: it is cut on a character boundary, never inside one, and invalid bytes become
// U+FFFD first. "…" marks a cut (and counts toward n).
func Clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = toValid(s)
	}
	if len(s) <= n {
		return s
	}
	const mark = "…"
	if n < len(mark) {
		return ""
	}
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func toValid(s string) string {
	b := make([]byte, 0, len(s))
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[:size]...)
		}
		s = s[size:]
	}
	return string(b)
}

// CleanLine makes a text from outside fit for one line of a page or a Prometheus label
// value: valid UTF-8 (a cut never splits a character, or a label would be refused and its
// series vanish), no control characters, at most n bytes.
func CleanLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return Clip(s, n)
}

// Bytes is a size for people: "1.5 GiB".
func Bytes(n int64) string {
	v := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if v < 1024 || u == "TiB" {
			return fmt.Sprintf("%.1f %s", v, u)
		}
		v /= 1024
	}
	return ""
}
