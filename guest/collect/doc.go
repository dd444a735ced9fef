// Package collect reads what a Linux guest is doing from /proc (through
// github.com/prometheus/procfs) and turns successive readings into an api.Snapshot: usage
// percentages from deltas, counters as the kernel reports them. It never panics on odd
// /proc contents: a part that cannot be read is left out and named in Snapshot.Errors.
package collect
