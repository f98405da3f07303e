package process_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"linli/shared/test/poll"
	"linli/shared/test/process"
)

func start(t *testing.T, script string, env ...string) *process.Proc {
	t.Helper()
	p, err := process.Start("sh", filepath.Join(t.TempDir(), "sh.log"), "/bin/sh", []string{"-c", script}, env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestStopLogRestart(t *testing.T) {
	// The child says it is up only once its TERM trap is set, so the
	// SIGTERM below cannot arrive before it.
	p := start(t, `trap 'echo bye $GREETING; exit 0' TERM; echo up; while :; do sleep 0.05; done`, "GREETING=neighbour")
	poll.WaitFor(t, "the child's first line", func() bool { return strings.Contains(p.Log(), "\nup\n") })
	if p.Exited() || p.Err() != nil {
		t.Fatalf("running child: exited %v, err %v", p.Exited(), p.Err())
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop of a child that exits 0 on SIGTERM: %v", err)
	}
	if !p.Exited() || !strings.Contains(p.Log(), "bye neighbour") {
		t.Fatalf("after Stop: exited %v, log %q", p.Exited(), p.Log())
	}
	if err := p.Stop(); err != nil { // stopping a stopped process is no error
		t.Fatal(err)
	}
	first := p.PID()
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "the restarted child's first line", func() bool { return strings.Count(p.Log(), "\nup\n") == 2 })
	if p.PID() == first || strings.Count(p.Log(), "---- start /bin/sh") != 2 {
		t.Fatalf("restart: pid %d (was %d), log %q", p.PID(), first, p.Log())
	}
}

func TestKill(t *testing.T) {
	p := start(t, `trap '' TERM; echo up; while :; do sleep 0.05; done`)
	poll.WaitFor(t, "the child's first line", func() bool { return strings.Contains(p.Log(), "\nup\n") })
	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Fatal("Kill returned before the child ended")
	}
	var exit *exec.ExitError
	if !errors.As(p.Err(), &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("killed child ended with %v; want SIGKILL", p.Err())
	}
	p.Kill() // a second kill of an ended process returns at once
}

func TestStartErrors(t *testing.T) {
	for _, c := range []struct{ name, log, bin string }{
		{"no binary", filepath.Join(t.TempDir(), "x.log"), "/nonexistent/linli-edge"},
		{"no log dir", "/nonexistent/dir/x.log", "/bin/true"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := process.Start("edge-1", c.log, c.bin, nil)
			if err == nil || p != nil || !strings.Contains(err.Error(), "start edge-1") {
				t.Fatalf("Start: %v, %v; want an error naming the process", p, err)
			}
		})
	}
}

func TestMemoryAndCPU(t *testing.T) {
	// The log's first line holds the script, so the child's own line is
	// one the script does not spell out.
	p := start(t, `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo counted $i; sleep 30`)
	poll.WaitFor(t, "the child's busy loop", func() bool { return strings.Contains(p.Log(), "counted 200000") })
	m, err := process.Memory(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	if m["VmRSS"] == 0 || m["VmHWM"] < m["VmRSS"] || m["RssAnon"] == 0 {
		t.Fatalf("memory of a running shell: %v", m)
	}
	cpu, err := process.CPUTime(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Fatalf("a shell that counted to 200,000 used %v of CPU", cpu)
	}
	if _, err := process.CPUTime(0); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if _, err := process.Memory(p.PID()); err == nil {
		t.Fatal("memory of an ended process: want an error")
	}
}
