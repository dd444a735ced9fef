package firecracker

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"hearth/app/hypervisor"
)

// TestTotalsFromFlushes: three flushes, each holding deltas; the totals are their sums
// (aggregate sections, not double-counted with the per-device ones).
func TestTotalsFromFlushes(t *testing.T) {
	b, err := os.ReadFile("testdata/metrics-three-flushes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	tot := newTotals()
	tot.readFrom(bytes.NewReader(b))
	got, lines := tot.snapshot()
	want := hypervisor.Counters{DiskReadBytes: 47104, DiskWriteBytes: 827392, DiskReads: 12, DiskWrites: 102,
		NetRxBytes: 65500, NetTxBytes: 3900, NetRxPackets: 53, NetTxPackets: 22}
	if got != want || lines != 3 || tot.bad != 0 {
		t.Errorf("totals %+v (lines %d, bad %d), want %+v", got, lines, tot.bad, want)
	}
}

func TestParseLinePerDeviceOnly(t *testing.T) {
	line := `{"utc_timestamp_ms":1,"block_rootfs":{"read_bytes":100,"write_bytes":5},"block_seed":{"read_bytes":20},"net_eth0":{"rx_bytes_count":7,"tx_bytes_count":9},"net_eth1":{"rx_bytes_count":1}}`
	d, err := ParseLine([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if d.DiskReadBytes != 120 || d.DiskWriteBytes != 5 || d.NetRxBytes != 8 || d.NetTxBytes != 9 {
		t.Errorf("per-device sums: %+v", d)
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, line := range []string{
		``, `[]`, `{"block":{"read_bytes":1}}`, `{"utc_timestamp_ms":1,"block":{"read_bytes":-5}}`,
		`{"utc_timestamp_ms":1,"net":{"rx_bytes_count":1.5}}`, `{"utc_timestamp_ms":1,"net":{"rx_bytes_count":"9"}}`,
		`{"utc_timestamp_ms":1,"block":[1]}`, `{"utc_timestamp_ms":1,` + strings.Repeat(" ", maxLine) + `}`,
	} {
		if d, err := ParseLine([]byte(line)); err == nil {
			t.Errorf("ParseLine(%.60q) = %+v, want error", line, d)
		}
	}
	// A bad line in the stream is counted and skipped; the good ones still add up.
	tot := newTotals()
	tot.readFrom(strings.NewReader("{\"utc_timestamp_ms\":1,\"net\":{\"rx_bytes_count\":10}}\ngarbage\n{\"utc_timestamp_ms\":2,\"net\":{\"rx_bytes_count\":5}}\n"))
	if got, lines := tot.snapshot(); got.NetRxBytes != 15 || lines != 3 || tot.bad != 1 {
		t.Errorf("stream with a bad line: %+v lines %d bad %d", got, lines, tot.bad)
	}
}

func FuzzParseLine(f *testing.F) {
	b, _ := os.ReadFile("testdata/metrics-three-flushes.jsonl")
	for _, l := range bytes.Split(b, []byte("\n")) {
		f.Add(l)
	}
	f.Add([]byte(`{"utc_timestamp_ms":1,"block":{"read_bytes":9223372036854775807},"block_x":{"read_bytes":9223372036854775807}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		d, err := ParseLine(line)
		if err != nil && d != (delta{}) {
			t.Fatalf("error with a partial delta %+v", d)
		}
	})
}
