package collect

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"hearth/guest/api"
)

// vmstatCap bounds how much of /proc/vmstat is read: it is about 8 KiB on 6.x kernels.
const vmstatCap = 256 << 10

// vmstat reads the page-cache counters of /proc/vmstat: nr_dirtied and nr_written are in
// pages, pgpgin and pgpgout in KiB (the kernel's own units). A kernel without nr_dirtied
// (before 2.6.37) has no page-cache figures: that is an error, not zeros that would read
// as "nothing written".
func (r *Reader) vmstat() (*api.PageCache, error) {
	f, err := os.Open(filepath.Join(r.ProcRoot, "vmstat"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseVMStat(io.LimitReader(f, vmstatCap), r.pageSize())
}

func (r *Reader) pageSize() uint64 {
	if r.PageSize > 0 {
		return r.PageSize
	}
	return uint64(os.Getpagesize())
}

// parseVMStat reads "name value" lines; only the names it needs are checked, each must be
// a decimal count that fits 64 bits once scaled to bytes.
func parseVMStat(rd io.Reader, pageSize uint64) (*api.PageCache, error) {
	want := map[string]uint64{"nr_dirtied": pageSize, "nr_written": pageSize, "pgpgin": 1024, "pgpgout": 1024, "pgmajfault": 1}
	got := map[string]uint64{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 256), 4096)
	for sc.Scan() {
		name, val, ok := bytes.Cut(sc.Bytes(), []byte{' '})
		unit, wanted := want[string(name)]
		if !ok || !wanted {
			continue
		}
		if _, dup := got[string(name)]; dup {
			return nil, fmt.Errorf("vmstat: %s twice", name)
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil || (unit > 1 && n > ^uint64(0)/unit) {
			return nil, fmt.Errorf("vmstat: %s %.32q is not a count", name, bytes.TrimSpace(val))
		}
		got[string(name)] = n * unit
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vmstat: %w", err)
	}
	for _, k := range []string{"nr_dirtied", "nr_written"} {
		if _, ok := got[k]; !ok {
			return nil, fmt.Errorf("vmstat: no %s (a kernel older than 2.6.37)", k)
		}
	}
	return &api.PageCache{DirtiedBytes: got["nr_dirtied"], WrittenBackBytes: got["nr_written"], PagedInBytes: got["pgpgin"],
		PagedOutBytes: got["pgpgout"], MajorFaults: got["pgmajfault"]}, nil
}
