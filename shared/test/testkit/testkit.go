// Package testkit helps tests run Linli for real: build the binaries, start
// them (and Mosquitto) as processes on free loopback ports, talk HTTP to
// them and check what they synced.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/process"
)

// SyncBuffer is a log sink that goroutines may write concurrently.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what has been written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a loopback address with a port reserved for this test
// process (process.FreeAddr): free now, and taken by no other test's
// server while this test's is starting, stopped or restarting.
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := process.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Root is the module's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds linli-hub and linli-edge once per test process and
// returns their paths.
func Binaries(t testing.TB) (hub, edge string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "linli-bin-")
		if buildErr != nil {
			return
		}
		buildErr = process.Build(Root(), buildDir, "./hub/cmd/linli-hub", "./edge/cmd/linli-edge")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "linli-hub"), filepath.Join(buildDir, "linli-edge")
}

// Proc is a child process under test.
type Proc struct {
	*process.Proc
	t testing.TB
}

// Start runs bin with args; its output goes to a log file that is printed
// if the test fails. The process is killed at the end of the test.
func Start(t testing.TB, name, bin string, args []string, env ...string) *Proc {
	t.Helper()
	pp, err := process.Start(name, filepath.Join(t.TempDir(), name+".log"), bin, args, env...)
	if err != nil {
		t.Fatal(err)
	}
	return adopt(t, pp)
}

// adopt makes pp the test's: killed at its end, its log printed if the
// test failed.
func adopt(t testing.TB, pp *process.Proc) *Proc {
	p := &Proc{Proc: pp, t: t}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			p.dumpLog()
		}
	})
	return p
}

// Restart starts the process again with the same arguments once it has
// ended.
func (p *Proc) Restart() {
	p.t.Helper()
	if err := p.Proc.Restart(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *Proc) dumpLog() {
	log := p.Tail(8000)
	if len(log) < len(p.Log()) {
		log = "…" + log
	}
	p.t.Logf("==== %s log:\n%s", p.Name, log)
}

var client = &http.Client{Timeout: 10 * time.Second}

// Do sends a JSON request and decodes a JSON answer into out (if non-nil).
// It returns the status code.
func Do(ctx context.Context, method, url, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			data, err := json.Marshal(body)
			if err != nil {
				return 0, err
			}
			rd = bytes.NewReader(data)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s answer %q: %w", method, url, data, err)
		}
	}
	return resp.StatusCode, nil
}

// WaitServing waits until url (http://127.0.0.1:port/…) answers 200 and
// then fails the test unless p holds the listener on that port: a server
// that could not bind its port exits, and whatever answered in its place
// belongs to another test.
func (p *Proc) WaitServing(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	WaitHTTP(t, url, timeout)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	own, err := process.ListensOn(p.PID(), u.Host)
	if err != nil || !own {
		t.Fatalf("%s answered, but not from %s (pid %d holds no listener on %s: %v); its log:\n%s",
			url, p.Name, p.PID(), u.Host, err, p.Tail(2000))
	}
}

// WaitHTTP polls url until it answers 200.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	poll.Eventually(t, timeout, func() (bool, string) {
		code, err := Do(context.Background(), "GET", url, "", nil, nil)
		return code == 200, fmt.Sprintf("GET %s: %d %v", url, code, err)
	})
}
