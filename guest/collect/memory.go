package collect

import (
	"errors"

	"github.com/prometheus/procfs"
)

// memory reads MemTotal, MemAvailable (or MemFree where the kernel lacks it) and swap.
func memory(m procfs.Meminfo) (Memory, Swap, error) {
	v := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	if m.MemTotalBytes == nil || *m.MemTotalBytes == 0 {
		return Memory{}, Swap{}, errors.New("meminfo: no MemTotal")
	}
	mem := Memory{TotalBytes: v(m.MemTotalBytes), FreeBytes: v(m.MemFreeBytes),
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
	swap := Swap{TotalBytes: v(m.SwapTotalBytes), FreeBytes: v(m.SwapFreeBytes)}
	if swap.FreeBytes <= swap.TotalBytes {
		swap.UsedBytes = swap.TotalBytes - swap.FreeBytes
	}
	return mem, swap, nil
}

// usagePercent is 100 × used / total.
func (m Memory) usagePercent() float64 {
	return clamp(100 * float64(m.UsedBytes) / float64(m.TotalBytes))
}
