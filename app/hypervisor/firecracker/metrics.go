package firecracker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"hearth/app/hypervisor"
)

// maxLine bounds one metrics line; Firecracker's are a few KiB.
const maxLine = 1 << 20

// delta is what one metrics line adds. Firecracker writes, at each flush, the change of
// every counter since the previous flush, so totals are the sum of all lines.
type delta = hypervisor.Counters

type blockSection struct {
	ReadBytes  *int64 `json:"read_bytes"`
	WriteBytes *int64 `json:"write_bytes"`
	ReadCount  *int64 `json:"read_count"`
	WriteCount *int64 `json:"write_count"`
}

type netSection struct {
	RxBytes   *int64 `json:"rx_bytes_count"`
	TxBytes   *int64 `json:"tx_bytes_count"`
	RxPackets *int64 `json:"rx_packets_count"`
	TxPackets *int64 `json:"tx_packets_count"`
}

// ParseLine reads one metrics line. It uses the aggregate "block" and "net" sections and,
// where a Firecracker writes only per-device sections ("block_rootfs", "net_eth0"), sums
// those. Negative or non-integer counters are errors: a corrupt line must not bend totals.
func ParseLine(line []byte) (delta, error) {
	var d delta
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return d, errors.New("empty metrics line")
	}
	if len(line) > maxLine {
		return d, errors.New("metrics line too long")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil {
		return d, fmt.Errorf("metrics line is not a JSON object: %w", err)
	}
	if _, ok := top["utc_timestamp_ms"]; !ok {
		return d, errors.New("metrics line has no utc_timestamp_ms")
	}
	add := func(dst *uint64, v *int64, what string) error {
		if v == nil {
			return nil
		}
		if *v < 0 {
			return fmt.Errorf("metrics: %s is negative", what)
		}
		*dst += uint64(*v)
		return nil
	}
	block := func(raw json.RawMessage, name string) error {
		var b blockSection
		if err := json.Unmarshal(raw, &b); err != nil {
			return fmt.Errorf("metrics: %s: %w", name, err)
		}
		return errors.Join(add(&d.DiskReadBytes, b.ReadBytes, name+".read_bytes"), add(&d.DiskWriteBytes, b.WriteBytes, name+".write_bytes"),
			add(&d.DiskReads, b.ReadCount, name+".read_count"), add(&d.DiskWrites, b.WriteCount, name+".write_count"))
	}
	net := func(raw json.RawMessage, name string) error {
		var n netSection
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("metrics: %s: %w", name, err)
		}
		return errors.Join(add(&d.NetRxBytes, n.RxBytes, name+".rx_bytes_count"), add(&d.NetTxBytes, n.TxBytes, name+".tx_bytes_count"),
			add(&d.NetRxPackets, n.RxPackets, name+".rx_packets_count"), add(&d.NetTxPackets, n.TxPackets, name+".tx_packets_count"))
	}
	var errs []error
	if raw, ok := top["block"]; ok {
		errs = append(errs, block(raw, "block"))
	} else {
		for k, raw := range top {
			if strings.HasPrefix(k, "block_") {
				errs = append(errs, block(raw, k))
			}
		}
	}
	if raw, ok := top["net"]; ok {
		errs = append(errs, net(raw, "net"))
	} else {
		for k, raw := range top {
			if strings.HasPrefix(k, "net_") {
				errs = append(errs, net(raw, k))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return delta{}, err
	}
	return d, nil
}

// totals keeps the running sums of every line read from one VM's metrics FIFO. Exactly one
// goroutine reads the FIFO (a second reader would steal lines and lose deltas).
type totals struct {
	mu    sync.Mutex
	sum   hypervisor.Counters
	lines uint64 // lines read, good or bad: lets Counters wait for a flush to land
	bad   uint64
	cond  *sync.Cond
}

func newTotals() *totals {
	t := &totals{}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// readFrom consumes lines until r ends.
func (t *totals) readFrom(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		d, err := ParseLine(sc.Bytes())
		t.mu.Lock()
		if err != nil {
			t.bad++
		} else {
			t.sum.NetRxBytes += d.NetRxBytes
			t.sum.NetTxBytes += d.NetTxBytes
			t.sum.NetRxPackets += d.NetRxPackets
			t.sum.NetTxPackets += d.NetTxPackets
			t.sum.DiskReadBytes += d.DiskReadBytes
			t.sum.DiskWriteBytes += d.DiskWriteBytes
			t.sum.DiskReads += d.DiskReads
			t.sum.DiskWrites += d.DiskWrites
		}
		t.lines++
		t.cond.Broadcast()
		t.mu.Unlock()
	}
}

func (t *totals) snapshot() (hypervisor.Counters, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sum, t.lines
}
