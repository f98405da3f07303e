// Package process runs the hub, edges and brokers as child processes for the
// benchmark harness and the end-to-end and fault tests: each in its own
// process group with its output in a log file, stopped with SIGTERM or
// killed like a power cut, and read back through /proc.
package process

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it kills.
const StopGrace = 15 * time.Second

// Proc is a child process. Its methods are not safe for concurrent use,
// except Exited, Done, PID and Log.
type Proc struct {
	Name    string
	bin     string
	args    []string
	env     []string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Start runs bin with args and env added to this process's environment.
// Its output is appended to logPath.
func Start(name, logPath, bin string, args []string, env ...string) (*Proc, error) {
	p := &Proc{Name: name, bin: bin, args: args, env: env, logPath: logPath}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	fmt.Fprintf(f, "---- start %s %s\n", p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a signal meant for the harness (^C) does not
	// reach it before the harness has stopped it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.waitErr = cmd, exited, nil
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(exited)
	}()
	return nil
}

// Restart waits for the process to end and starts it again with the same
// arguments and log.
func (p *Proc) Restart() error {
	<-p.exited
	return p.start()
}

// Stop sends SIGTERM and waits up to StopGrace for the process to end, then
// kills it. It returns the exit error (nil for exit code 0).
func (p *Proc) Stop() error {
	if p.Exited() {
		return p.waitErr
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.Name, err)
	}
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(StopGrace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM", p.Name, StopGrace)
	}
}

// Kill sends SIGKILL (a crash, a power cut of the process) and waits for it
// to end.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill() // it may have ended meanwhile; the wait below holds either way
	<-p.exited
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Done is closed when the process ends.
func (p *Proc) Done() <-chan struct{} { return p.exited }

// Err is how the process ended; meaningful once Done is closed.
func (p *Proc) Err() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// PID is the process id of the process last started.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Log returns what the process has printed so far (an error's text if
// the log cannot be read).
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Memory reads the memory lines of /proc/PID/status (VmHWM, VmRSS,
// RssAnon, RssFile, RssShmem, …) in bytes.
func Memory(pid int) (map[string]uint64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !(strings.HasPrefix(k, "Vm") || strings.HasPrefix(k, "Rss")) {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		n, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, k, err)
		}
		out[k] = n << 10
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// CPUTime is the user and system CPU time process pid has used (0: this
// process).
func CPUTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The fields after the command, which may hold spaces, start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected %s", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected %s", path)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// DiskUsage is what du reports for dir: allocated bytes of its files
// (Badger's value log is sparse while open: its length says little).
func DiskUsage(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n, err
}
