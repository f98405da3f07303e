package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	pollpkg "linli/shared/test/poll"
	"linli/shared/test/process"
)

// proc is a child process of the harness: a hub, an edge or Mosquitto.
type proc struct{ *process.Proc }

// startProc runs bin with args; its output goes to <dir>/<name>.log.
func startProc(dir, name, bin string, args []string, env ...string) (*proc, error) {
	p, err := process.Start(name, filepath.Join(dir, name+".log"), bin, args, env...)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

// alive fails when the process has exited, quoting the end of its log.
func (p *proc) alive() error {
	if p.Exited() {
		return fmt.Errorf("%s exited (%v): %s", p.Name, p.Err(), oneLine(p.Tail(600)))
	}
	return nil
}

// memory reads the process's peak (VmHWM) and current (VmRSS) resident set.
func (p *proc) memory() (peak, cur uint64, err error) {
	m, err := process.Memory(p.PID())
	return m["VmHWM"], m["VmRSS"], err
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
			if st, err := process.Memory(p.PID()); err == nil {
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
	return pollpkg.Until(ctx, timeout, interval, cond, func() error {
		for _, p := range procs {
			if err := p.alive(); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitHTTP waits until url answers 200.
func waitHTTP(ctx context.Context, url string, p *proc) error {
	return poll(ctx, 60*time.Second, 20*time.Millisecond, func() (bool, error) {
		return getJSON(ctx, url, "", nil) == nil, nil
	}, p)
}

// cpu is the process's CPU time so far.
func (p *proc) cpu() (time.Duration, error) { return process.CPUTime(p.PID()) }

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
