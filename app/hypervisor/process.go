package hypervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a hypervisor process: one this manager started (and waits for), or one a
// previous manager started and this one took over by pid (and polls).
type Process struct {
	pid      int
	identity string // boot id and start time: see IdentityOf
	child    bool   // started here: the pid stays ours until we reap it
	proc     *os.Process
	done     chan struct{}
	exit     Exit
}

// StartProcess starts cmd in its own session (so it outlives the manager, which re-attaches
// to it after a restart) and waits for it in the background.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The child is not reaped before Wait below, so its pid cannot be reused yet and this
	// reads its own start time.
	id, _ := IdentityOf(cmd.Process.Pid)
	p := &Process{pid: cmd.Process.Pid, identity: id, child: true, proc: cmd.Process, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		e := Exit{At: time.Now()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			e.Code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				e.Code, e.Signal = -1, ws.Signal().String()
			}
		}
		p.exit = e
		close(p.done)
	}()
	return p, nil
}

// FindProcess takes over a running process by pid. It must be the process recorded at its
// start (identity; see Verify) and its command line must contain marker, so that a
// recycled pid is never mistaken for our VM. Its end is noticed by polling; its exit status
// cannot be known, since another process was its parent.
func FindProcess(pid int, identity, marker string) (*Process, error) {
	if err := Verify(pid, identity); err != nil {
		return nil, err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, ErrGone
	}
	if !bytes.Contains(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), []byte(marker)) {
		return nil, fmt.Errorf("process %d is not this VM's hypervisor (its command line lacks %q)", pid, marker)
	}
	p := &Process{pid: pid, identity: identity, done: make(chan struct{})}
	go func() {
		for Verify(pid, identity) == nil {
			time.Sleep(250 * time.Millisecond)
		}
		p.exit = Exit{Code: -1, Signal: "", At: time.Now()}
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.pid }

// Identity is what names the process beyond its pid ("" if it was gone before it could be
// read); record it with the pid.
func (p *Process) Identity() string { return p.identity }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exit waits for the process and says how it ended.
func (p *Process) Exit() Exit { <-p.done; return p.exit }

// Alive reports whether the process still runs.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL: to our own child directly, to a taken-over process only while it is
// still the one recorded.
func (p *Process) Kill() {
	if p.child {
		p.proc.Signal(syscall.SIGKILL) //nolint:errcheck // it may be gone already
		return
	}
	SignalVerified(p.pid, p.identity, syscall.SIGKILL) //nolint:errcheck // gone or not ours: nothing to kill
}
