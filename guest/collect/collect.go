package collect

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"hearth/guest/api"

	"github.com/prometheus/procfs"
	"github.com/prometheus/procfs/blockdevice"
)

// Reader reads the guest's state. Roots are configurable so tests can point it at fixtures.
type Reader struct {
	ProcRoot string // "/proc" in production
	SysRoot  string // "/sys" in production
	// Interfaces lists network interfaces; nil means the host's, through net.Interfaces.
	Interfaces func() ([]api.Interface, error)
	// Statfs measures a mounted filesystem; nil means syscall.Statfs.
	Statfs func(path string) (size, used, avail uint64, err error)
	// PageSize scales /proc/vmstat's page counts; 0 means the system's.
	PageSize uint64
	Now      func() time.Time
}

// reading is one pass over /proc: everything but the shares, which need two readings.
type reading struct {
	snap    api.Snapshot
	cpu     api.CPUTimes
	haveCPU bool
}

// NewReader returns a Reader of the live system.
func NewReader() *Reader {
	return &Reader{ProcRoot: "/proc", SysRoot: "/sys"}
}

func (r *Reader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// read takes one reading. Each part that fails is skipped with a note in Errors, so a
// container without /proc/diskstats still reports CPU and memory.
func (r *Reader) read() reading {
	var rd reading
	s := &rd.snap
	s.Time = r.now().UTC()
	fail := func(part string, err error) {
		s.Errors = append(s.Errors, fmt.Sprintf("%s: %v", part, clip(err.Error())))
	}

	fs, err := procfs.NewFS(r.ProcRoot)
	if err != nil {
		fail("proc", err)
		return rd
	}
	if st, err := fs.Stat(); err != nil {
		fail("stat", err)
	} else {
		rd.cpu, rd.haveCPU = cpuTimes(st.CPUTotal), true
		s.CPUSeconds = rd.cpu
		s.CPU.Count = len(st.CPU)
		s.Processes.Running, s.Processes.Blocked = st.ProcessesRunning, st.ProcessesBlocked
		if st.BootTime > 0 {
			if up := s.Time.Sub(time.Unix(int64(st.BootTime), 0)).Seconds(); up > 0 {
				s.UptimeSeconds = up
			}
		}
	}
	if mi, err := fs.Meminfo(); err != nil {
		fail("meminfo", err)
	} else if mem, swap, err := memory(mi); err != nil {
		fail("meminfo", err)
	} else {
		s.Memory, s.Swap = mem, swap
		p := usagePercent(mem)
		s.MemUsagePercent = &p
	}
	if la, err := fs.LoadAvg(); err != nil {
		fail("loadavg", err)
	} else {
		s.Load = api.Load{Load1: la.Load1, Load5: la.Load5, Load15: la.Load15}
	}
	s.Processes.Total = r.countProcs()
	if nd, err := fs.NetDev(); err != nil {
		fail("net/dev", err)
	} else {
		s.Network = netIfaces(nd)
	}
	if disks, err := r.disks(); err != nil {
		fail("diskstats", err)
	} else {
		s.Disks = disks
	}
	if pc, err := r.vmstat(); err != nil {
		fail("vmstat", err)
	} else {
		s.PageCache = pc
	}
	if mounts, err := fs.GetMounts(); err != nil {
		fail("mountinfo", err)
	} else {
		s.Filesystems = r.filesystems(mounts, fail)
	}
	if ifs, err := r.interfaces(); err != nil {
		fail("interfaces", err)
	} else {
		s.Interfaces = ifs
	}
	s.Hostname = r.hostname()
	return rd
}

// clip bounds an error message: a malformed /proc file must not balloon the response.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func (r *Reader) countProcs() uint64 {
	entries, err := os.ReadDir(r.ProcRoot)
	if err != nil {
		return 0
	}
	var n uint64
	for _, e := range entries {
		if name := e.Name(); name != "" && strings.Trim(name, "0123456789") == "" {
			n++
		}
	}
	return n
}

func netIfaces(nd procfs.NetDev) []api.NetIface {
	out := make([]api.NetIface, 0, len(nd))
	for name, l := range nd {
		if name == "lo" {
			continue
		}
		out = append(out, api.NetIface{Interface: name, RxBytes: l.RxBytes, TxBytes: l.TxBytes, RxPackets: l.RxPackets,
			TxPackets: l.TxPackets, RxErrors: l.RxErrors, TxErrors: l.TxErrors, RxDropped: l.RxDropped, TxDropped: l.TxDropped})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Interface < out[j].Interface })
	return out
}

// ignoredDisks are partitions and virtual devices: counting them would double-count I/O.
// The same rule as node_exporter's diskstats collector.
var ignoredDisks = regexp.MustCompile(`^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$`)

// sectorBytes: /proc/diskstats counts 512-byte sectors whatever the device's block size.
const sectorBytes = 512

func (r *Reader) disks() ([]api.Disk, error) {
	bfs, err := blockdevice.NewFS(r.ProcRoot, r.SysRoot)
	if err != nil {
		return nil, err
	}
	stats, err := bfs.ProcDiskstats()
	if err != nil {
		return nil, err
	}
	out := []api.Disk{}
	for _, d := range stats {
		if ignoredDisks.MatchString(d.DeviceName) || strings.HasPrefix(d.DeviceName, "loop") || strings.HasPrefix(d.DeviceName, "ram") {
			continue
		}
		out = append(out, api.Disk{Device: d.DeviceName, ReadBytes: d.ReadSectors * sectorBytes,
			WrittenBytes: d.WriteSectors * sectorBytes, Reads: d.ReadIOs, Writes: d.WriteIOs})
	}
	return out, nil
}

// pseudoFS are filesystem types with no storage behind them (or read-only images like the
// cloud-init seed), and remote ones whose statfs can hang: not "real mounted filesystems".
var pseudoFS = map[string]bool{
	"autofs": true, "binfmt_misc": true, "bpf": true, "cgroup": true, "cgroup2": true, "configfs": true,
	"debugfs": true, "devpts": true, "devtmpfs": true, "fusectl": true, "hugetlbfs": true, "iso9660": true,
	"mqueue": true, "nsfs": true, "overlay": true, "proc": true, "pstore": true, "rpc_pipefs": true,
	"securityfs": true, "selinuxfs": true, "squashfs": true, "erofs": true, "sysfs": true, "tracefs": true,
	"ramfs": true, "efivarfs": true, "nfs": true, "nfs4": true, "cifs": true, "smb3": true, "fuse.sshfs": true,
	"tmpfs": true,
}

var pseudoMount = regexp.MustCompile(`^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`)

func (r *Reader) filesystems(mounts []*procfs.MountInfo, fail func(string, error)) []api.Filesystem {
	statfs := r.Statfs
	if statfs == nil {
		statfs = realStatfs
	}
	seen := map[string]bool{}
	out := []api.Filesystem{}
	for _, m := range mounts {
		if pseudoFS[m.FSType] || pseudoMount.MatchString(m.MountPoint) || seen[m.MajorMinorVer] {
			continue
		}
		seen[m.MajorMinorVer] = true // a bind mount of the same device would count twice
		size, used, avail, err := statfs(m.MountPoint)
		if err != nil {
			fail("statfs "+m.MountPoint, err)
			continue
		}
		out = append(out, api.Filesystem{Mountpoint: m.MountPoint, Device: m.Source, FSType: m.FSType,
			SizeBytes: size, UsedBytes: used, AvailBytes: avail})
		if len(out) >= 256 { // bounded: a guest with thousands of mounts must not flood the answer
			break
		}
	}
	return out
}

func realStatfs(path string) (size, used, avail uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, 0, err
	}
	bs := uint64(st.Bsize)
	size = st.Blocks * bs
	free := st.Bfree * bs
	if free <= size {
		used = size - free
	}
	return size, used, st.Bavail * bs, nil
}

func (r *Reader) interfaces() ([]api.Interface, error) {
	if r.Interfaces != nil {
		return r.Interfaces()
	}
	return HostInterfaces()
}

// HostInterfaces lists the host's interfaces except loopback, with their addresses.
func HostInterfaces() ([]api.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := []api.Interface{}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		it := api.Interface{Name: i.Name, MAC: i.HardwareAddr.String(), Up: i.Flags&net.FlagUp != 0, Addresses: []string{}}
		if addrs, err := i.Addrs(); err == nil {
			for _, a := range addrs {
				it.Addresses = append(it.Addresses, a.String())
			}
		}
		out = append(out, it)
		if len(out) >= 256 {
			break
		}
	}
	return out, nil
}

func (r *Reader) hostname() string {
	if b, err := os.ReadFile(filepath.Join(r.ProcRoot, "sys/kernel/hostname")); err == nil {
		if h := strings.TrimSpace(string(b)); h != "" && len(h) <= 253 {
			return h
		}
	}
	h, _ := os.Hostname()
	return h
}
