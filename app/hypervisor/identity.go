package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// A pid names a process only while it lives: after a crash or a host reboot the number is
// handed to something else. An identity names one process for good: the kernel's boot id,
// the pid, and the process's start time in clock ticks since that boot (field 22 of
// /proc/<pid>/stat). A pid is reused only after the whole pid space has wrapped, never
// within one tick, so no two processes share all three.

// ErrGone says the pid runs nothing now.
var ErrGone = errors.New("no such process")

// MismatchError says the pid now belongs to another process than the one recorded.
type MismatchError struct {
	PID  int
	Comm string // what runs under the pid now
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("pid %d now belongs to another process (%s)", e.PID, e.Comm)
}

// bootIDFile holds the random id the kernel draws at each boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// IdentityOf returns the identity of the process pid, or ErrGone.
func IdentityOf(pid int) (string, error) {
	id, _, err := identity(pid)
	return id, err
}

func identity(pid int) (id, comm string, err error) {
	if pid <= 0 {
		return "", "", ErrGone
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return "", "", ErrGone
	}
	st, err := p.Stat()
	if err != nil {
		return "", "", ErrGone // it went between the two reads
	}
	if st.State == "Z" || st.State == "X" {
		return "", "", ErrGone // exited; only its parent's wait is left
	}
	boot, err := os.ReadFile(bootIDFile)
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", bootIDFile, err)
	}
	return strings.TrimSpace(string(boot)) + "/" + strconv.Itoa(pid) + "/" + strconv.FormatUint(st.Starttime, 10), st.Comm, nil
}

// Verify reports whether pid is still the process whose identity was recorded: nil when it
// is, ErrGone when nothing runs under the pid, *MismatchError when something else does.
func Verify(pid int, want string) error {
	got, comm, err := identity(pid)
	if err != nil {
		return err
	}
	if want == "" || got != want {
		return &MismatchError{PID: pid, Comm: comm}
	}
	return nil
}

// SignalVerified sends sig to pid only if pid is still the process identified by want. It
// opens a pidfd first and checks the identity after: the pidfd cannot start pointing at a
// later process, and the check proves it points at ours, so no pid reuse in between can
// turn the signal on a stranger.
func SignalVerified(pid int, want string, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrGone
		}
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := Verify(pid, want); err != nil {
		return err
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrGone
		}
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}
