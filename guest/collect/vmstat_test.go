package collect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/guest/api"
)

func TestPageCacheFromVMStat(t *testing.T) {
	r, proc := fixture(t, "kernel-6.18-firecracker")
	r.PageSize = 4096
	before := NewSampler(r, time.Second, "test").Sample()
	if before.PageCache == nil {
		t.Fatalf("no page cache figures: %v", before.Errors)
	}
	// What the story's loop does in the guest: 20 MiB written into the page cache, none
	// of it written back, nothing read from the disk.
	b, _ := os.ReadFile(filepath.Join(proc, "vmstat"))
	after := strings.Replace(string(b), "\nnr_dirtied 20496389\n", "\nnr_dirtied 20501509\n", 1)
	if after == string(b) {
		t.Fatal("the fixture's nr_dirtied changed: update the test")
	}
	os.WriteFile(filepath.Join(proc, "vmstat"), []byte(after), 0o644)
	got := NewSampler(r, time.Second, "test").Sample().PageCache
	if d := got.DirtiedBytes - before.PageCache.DirtiedBytes; d != 20<<20 {
		t.Errorf("dirtied %d bytes, want 20 MiB", d)
	}
	want := api.PageCache{DirtiedBytes: 20501509 * 4096, WrittenBackBytes: 8412624 * 4096, PagedInBytes: 23524257 * 1024,
		PagedOutBytes: 34025240 * 1024, MajorFaults: 61070}
	if *got != want {
		t.Errorf("page cache = %+v, want %+v", *got, want)
	}
}

func TestVMStatRefusals(t *testing.T) {
	for name, body := range map[string]string{
		"old kernel":   "pgpgin 5\npgpgout 6\npgmajfault 1\n",
		"negative":     "nr_dirtied -5\nnr_written 1\n",
		"float":        "nr_dirtied 1.5\nnr_written 1\n",
		"overflow":     "nr_dirtied 18446744073709551615\nnr_written 1\n",
		"twice":        "nr_dirtied 1\nnr_dirtied 2\nnr_written 1\n",
		"huge line":    "nr_dirtied " + strings.Repeat("1", 10000) + "\nnr_written 1\n",
		"empty":        "",
		"not a number": "nr_dirtied lots\nnr_written 1\n",
	} {
		if pc, err := parseVMStat(strings.NewReader(body), 4096); err == nil {
			t.Errorf("%s: accepted as %+v", name, pc)
		}
	}
	// A missing file is an error the snapshot notes; the rest is still read.
	r, proc := fixture(t, "kernel-6.18-firecracker")
	os.Remove(filepath.Join(proc, "vmstat"))
	got := NewSampler(r, time.Second, "test").Sample()
	if got.PageCache != nil || !strings.Contains(strings.Join(got.Errors, " "), "vmstat") || got.MemUsagePercent == nil {
		t.Errorf("without /proc/vmstat: page cache %+v, errors %v", got.PageCache, got.Errors)
	}
}

func FuzzVMStat(f *testing.F) {
	b, _ := os.ReadFile("testdata/kernel-6.18-firecracker/proc/vmstat")
	f.Add(string(b))
	f.Add("nr_dirtied 1\nnr_written 2\npgpgin 3\n")
	f.Add("nr_dirtied\tx\nnr_written  9\n")
	f.Fuzz(func(t *testing.T, body string) {
		pc, err := parseVMStat(strings.NewReader(body), 4096)
		if (pc == nil) == (err == nil) {
			t.Fatalf("page cache %+v with error %v", pc, err)
		}
		if pc != nil && pc.DirtiedBytes%4096 != 0 {
			t.Fatalf("dirtied %d is not whole pages", pc.DirtiedBytes)
		}
	})
}
