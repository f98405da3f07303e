package process

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A port handed out once is not handed out again while this process
// lives, though nothing listens on it: a test whose server is down for a
// restart gets it back, not another test's server.
func TestFreeAddrNotHandedOutTwice(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if port < lowestPort || port >= ephemeralStart() {
		t.Errorf("port %d not in %d-%d, below the ephemeral range", port, lowestPort, ephemeralStart()-1)
	}
	again, err := reserveAddr(func(lo, hi int) int { return port })
	if err == nil {
		t.Fatalf("the reserved port %d handed out again as %s", port, again)
	}
}

// Another process that reserves ports does not get one this process
// holds, and gets it once this process has ended.
func TestReservationHoldsAcrossProcesses(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the holder's port: %v", err)
	}
	_, portStr, err := net.SplitHostPort(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the holder printed %q: %v", line, err)
	}
	port, _ := strconv.Atoi(portStr)
	if ok, err := reservePort(port); err != nil || ok {
		t.Fatalf("port %d, held by another process, reserved here too: %v %v", port, ok, err)
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	if ok, err := reservePort(port); err != nil || !ok {
		t.Fatalf("port %d not reservable once its holder ended: %v %v", port, ok, err)
	}
}

func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	if own, err := ListensOn(os.Getpid(), addr); err != nil || !own {
		t.Errorf("ListensOn(this process, its own listener %s) = %v, %v", addr, own, err)
	}
	p, err := Start("sh", filepath.Join(t.TempDir(), "sh.log"), "/bin/sh", []string{"-c", "sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if own, err := ListensOn(p.PID(), addr); err != nil || own {
		t.Errorf("ListensOn(a child that listens nowhere, %s) = %v, %v", addr, own, err)
	}
	free, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if own, err := ListensOn(os.Getpid(), free); err != nil || own {
		t.Errorf("ListensOn(this process, %s where nothing listens) = %v, %v", free, own, err)
	}
}

// A server that could not bind its port, while another process listens
// there, is not taken for up: the wait fails, naming the other listener.
func TestWaitListeningWantsTheProcessItself(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := Start("sh", filepath.Join(t.TempDir(), "sh.log"), "/bin/sh", []string{"-c", "sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	err = WaitListening(context.Background(), l.Addr().String(), 500*time.Millisecond, p)
	if err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Fatalf("WaitListening with another process on the port: %v; want it refused", err)
	}
}
