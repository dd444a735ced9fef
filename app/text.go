package app

import "unicode/utf8"

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
