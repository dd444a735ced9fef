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
	pid  int
	proc *os.Process
	done chan struct{}
	exit Exit
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
	p := &Process{pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
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

// FindProcess takes over a running process by pid, if its command line contains marker (so
// a recycled pid is never mistaken for our VM). Its end is noticed by polling; its exit
// status cannot be known, since another process was its parent.
func FindProcess(pid int, marker string) (*Process, error) {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("process %d is gone", pid)
	}
	if !bytes.Contains(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), []byte(marker)) {
		return nil, fmt.Errorf("process %d is not this VM's hypervisor (pid reused)", pid)
	}
	proc, _ := os.FindProcess(pid)
	p := &Process{pid: pid, proc: proc, done: make(chan struct{})}
	go func() {
		for syscall.Kill(pid, 0) == nil && !zombie(pid) {
			time.Sleep(250 * time.Millisecond)
		}
		p.exit = Exit{Code: -1, Signal: "", At: time.Now()}
		close(p.done)
	}()
	return p, nil
}

// zombie reports whether pid has exited but is not reaped (its parent is gone or busy).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// PID is the process id.
func (p *Process) PID() int { return p.pid }

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

// Kill sends SIGKILL.
func (p *Process) Kill() { p.proc.Signal(syscall.SIGKILL) } //nolint:errcheck // it may be gone already
