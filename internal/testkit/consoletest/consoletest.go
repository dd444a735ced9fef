// Package consoletest reads a console viewer in tests.
package consoletest

import (
	"bytes"
	"testing"
	"time"

	"hearth/app/console"
)

// Expect reads v until want has come, and returns all it read; the test fails when the
// viewer ends first or nothing matching comes within the time.
func Expect(t testing.TB, v *console.Viewer, want string, within time.Duration) []byte {
	t.Helper()
	var got []byte
	deadline := time.After(within)
	for !bytes.Contains(got, []byte(want)) {
		b, open := v.Take()
		got = append(got, b...)
		if len(b) > 0 {
			continue
		}
		if !open {
			t.Fatalf("the console ended before %q (fell behind: %v); got:\n%s", want, v.Dropped(), got)
		}
		select {
		case <-v.Ready():
		case <-deadline:
			t.Fatalf("no %q within %s; got:\n%s", want, within, got)
		}
	}
	return got
}
