package collect

import (
	"errors"

	"hearth/guest/api"

	"github.com/prometheus/procfs"
)

// memory reads MemTotal, MemAvailable (or MemFree where the kernel lacks it) and swap.
func memory(m procfs.Meminfo) (api.Memory, api.Swap, error) {
	v := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	if m.MemTotalBytes == nil || *m.MemTotalBytes == 0 {
		return api.Memory{}, api.Swap{}, errors.New("meminfo: no MemTotal")
	}
	mem := api.Memory{TotalBytes: v(m.MemTotalBytes), FreeBytes: v(m.MemFreeBytes),
		BuffersBytes: v(m.BuffersBytes), CachedBytes: v(m.CachedBytes)}
	if m.MemAvailableBytes != nil {
		mem.AvailableBytes = *m.MemAvailableBytes
	} else {
		mem.AvailableBytes = mem.FreeBytes
		mem.AvailableEstimated = true
	}
	if mem.AvailableBytes > mem.TotalBytes {
		mem.AvailableBytes = mem.TotalBytes
	}
	mem.UsedBytes = mem.TotalBytes - mem.AvailableBytes
	swap := api.Swap{TotalBytes: v(m.SwapTotalBytes), FreeBytes: v(m.SwapFreeBytes)}
	if swap.FreeBytes <= swap.TotalBytes {
		swap.UsedBytes = swap.TotalBytes - swap.FreeBytes
	}
	return mem, swap, nil
}

// usagePercent is 100 × used / total.
func usagePercent(m api.Memory) float64 {
	return clamp(100 * float64(m.UsedBytes) / float64(m.TotalBytes))
}
