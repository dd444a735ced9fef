// Package testenv decides what a test does when a real component it needs (PostgreSQL,
// Chromium, sshd, QEMU, cloud-init) is missing: skip locally, fail under HEARTH_REQUIRE_ALL=1
// so that CI cannot pass by silently testing less.
package testenv

import (
	"os"
	"runtime"
	"testing"
)

// RequireAll reports whether HEARTH_REQUIRE_ALL is set to a true value.
func RequireAll() bool {
	switch os.Getenv("HEARTH_REQUIRE_ALL") {
	case "1", "true", "yes":
		return true
	}
	return false
}

// Missing skips the test because component is unavailable, or fails it under
// HEARTH_REQUIRE_ALL.
func Missing(tb testing.TB, component string, why any) {
	tb.Helper()
	if RequireAll() {
		tb.Fatalf("%s is required (HEARTH_REQUIRE_ALL=1) but unavailable: %v", component, why)
	}
	tb.Skipf("%s unavailable, skipping: %v (set HEARTH_REQUIRE_ALL=1 to make this fail)", component, why)
}

// HeapInUse is the heap in use after a collection: for tests that bound what a flood or a
// hostile input may cost.
func HeapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
