package process_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linli/shared/test/process"
)

// The shipped config as the tests and the benchmark run it: the listener
// moved to loopback, persistence into the run's directory (never a second
// persistence_location, which Mosquitto refuses) and the extra lines in
// place of the shipped ones.
func TestRewriteMosquittoConf(t *testing.T) {
	base := "listener 1883 0.0.0.0\npersistence true\npersistence_location /var/lib/mosquitto/\nmax_queued_messages 1000\n"
	got := process.RewriteMosquittoConf(base, "127.0.0.1:4242", "/tmp/run", "max_queued_messages 5")
	want := "listener 4242 127.0.0.1\npersistence true\n\npersistence_location /tmp/run/\nmax_queued_messages 5\n"
	if got != want {
		t.Errorf("RewriteMosquittoConf:\n%s\nwant:\n%s", got, want)
	}
}

func TestStartMosquitto(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "..", "configs", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := process.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	url, p, err := process.StartMosquitto(context.Background(), process.Mosquitto{
		Bin: "/usr/sbin/mosquitto", Base: string(base), Addr: addr, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if url != "tcp://"+addr {
		t.Errorf("url %q, want tcp://%s", url, addr)
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("StartMosquitto returned before the broker listened: %v", err)
	}
	c.Close()
	if _, err := os.Stat(filepath.Join(dir, "mosquitto.log")); err != nil {
		t.Errorf("no log in the run's directory: %v", err)
	}
}

// A process that dies while it is awaited ends the wait at once, quoting
// its log, instead of after the whole timeout.
func TestWaitListeningGivesUpWhenTheProcessEnds(t *testing.T) {
	addr, err := process.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, `echo cannot bind; exit 3`)
	t0 := time.Now()
	err = process.WaitListening(context.Background(), addr, time.Minute, p)
	if err == nil || !strings.Contains(err.Error(), "cannot bind") || !strings.Contains(err.Error(), "sh exited") {
		t.Fatalf("WaitListening on a dead process: %v; want its exit and log", err)
	}
	if took := time.Since(t0); took > 30*time.Second {
		t.Errorf("gave up after %v", took)
	}
	if got := p.Tail(5); len(got) != 5 || !strings.HasSuffix(p.Log(), got) {
		t.Errorf("Tail(5) = %q, not the log's end", got)
	}
}
