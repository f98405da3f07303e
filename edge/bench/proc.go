package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the harness: a hub, an edge or Mosquitto.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// startProc runs bin with args; its output goes to <dir>/<name>.log.
func startProc(dir, name, bin string, args []string, env ...string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "---- %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to 15 s, then kills.
func (p *proc) stop() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(15 * time.Second):
		p.kill()
		return fmt.Errorf("%s did not stop within 15s of SIGTERM", p.name)
	}
}

func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill() // it may have exited meanwhile; we wait below either way
	<-p.exited
}

// alive fails when the process has exited, quoting the end of its log.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.waitErr, p.tail(600))
	default:
		return nil
	}
}

func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return oneLine(string(b))
}

// memory reads the process's peak (VmHWM) and current (VmRSS) resident set.
func (p *proc) memory() (peak, cur uint64, err error) {
	m, err := p.status()
	return m["VmHWM"], m["VmRSS"], err
}

// status reads the memory lines (in bytes) of /proc/<pid>/status: VmHWM,
// VmRSS, RssAnon, RssFile, RssShmem.
func (p *proc) status() (map[string]uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
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
			return nil, err
		}
		out[k] = n << 10
	}
	return out, sc.Err()
}

// memPeaks follows a process's anonymous and file-backed resident memory
// while it runs; VmHWM only gives their peak sum.
type memPeaks struct {
	anon, file uint64
	stop       chan struct{}
	done       chan struct{}
}

func watchMemory(p *proc, every time.Duration) *memPeaks {
	m := &memPeaks{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if st, err := p.status(); err == nil {
				m.anon, m.file = max(m.anon, st["RssAnon"]), max(m.file, st["RssFile"]+st["RssShmem"])
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeaks) end() { close(m.stop); <-m.done }

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

var httpc = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 256, IdleConnTimeout: time.Minute},
}

// getJSON GETs url (with a bearer token when set) and decodes the answer.
func getJSON(ctx context.Context, url, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, oneLine(string(data)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// postJSON POSTs body and returns the status code and the answer.
func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// poll calls cond every interval until it returns true, an error, the
// process p dies, or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error), procs ...*proc) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		for _, p := range procs {
			if err := p.alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return fmt.Errorf("not within %v: %w", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// waitHTTP waits until url answers 200.
func waitHTTP(ctx context.Context, url string, p *proc) error {
	return poll(ctx, 60*time.Second, 20*time.Millisecond, func() (bool, error) {
		return getJSON(ctx, url, "", nil) == nil, nil
	}, p)
}

// cpuTime is the user+system CPU time process pid has used (0: self).
func cpuTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
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
		return 0, err
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// cpu is the process's CPU time so far.
func (p *proc) cpu() (time.Duration, error) { return cpuTime(p.cmd.Process.Pid) }

// machineTicks reads the whole machine's idle (idle + iowait) and busy
// CPU ticks from /proc/stat.
func machineTicks() (idle, busy uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat: %q", line)
	}
	// user nice system idle iowait irq softirq steal …
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i == 3 || i == 4 {
			idle += n
		} else {
			busy += n
		}
	}
	return idle, busy, nil
}
