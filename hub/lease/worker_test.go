package lease_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"linli/hub/lease"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// The environment that makes this test binary a lease worker process.
const (
	envURL   = "LINLI_LEASE_WORKER_URL"
	envID    = "LINLI_LEASE_WORKER_ID"
	envSites = "LINLI_LEASE_WORKER_SITES"
	// envBroker makes the worker a whole receiving side (runWorker):
	// ingest on PostgreSQL through the external broker at this URL.
	envBroker = "LINLI_LEASE_WORKER_BROKER"
)

// workerMain runs a Manager with the default timings and reports false
// unless the environment asks this process to be a worker; then it runs
// until it is killed (or for a minute, should nobody kill it).
func workerMain() bool {
	url := os.Getenv(envURL)
	if url == "" {
		return false
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Error("worker: connect", "err", err)
		os.Exit(1)
	}
	sites := strings.Split(os.Getenv(envSites), ",")
	if broker := os.Getenv(envBroker); broker != "" {
		p.Close()
		if err := runWorker(ctx, url, broker, os.Getenv(envID), sites, lease.Options{}, log); err != nil {
			log.Error("worker", "err", err)
		}
		return true
	}
	m, err := lease.New(lease.Options{Pool: p, ID: os.Getenv(envID), Sites: func() []string { return sites }, Logger: log})
	if err != nil {
		log.Error("worker", "err", err)
		os.Exit(1)
	}
	if err := m.Run(ctx); err != nil {
		log.Error("worker", "err", err)
	}
	p.Close()
	return true
}

// leases counts the live leases of owner, by the database's clock.
func leases(t *testing.T, p *pgxpool.Pool, owner string) int {
	t.Helper()
	var n int
	if err := p.QueryRow(context.Background(), `SELECT count(*) FROM site_leases WHERE owner = $1 AND expires_at > now()`, owner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A worker process killed with SIGKILL (no handover, its connections left
// for the server to notice) has its sites owned by the other worker
// within 10 s, at a higher epoch, with the default timings.
func TestSIGKILLedWorkersSitesMoveWithin10s(t *testing.T) {
	url := database(t)
	p := pool(t, url)
	sites := sitesN(20)
	w := startWorkerProcess(t, envURL+"="+url, envID+"=hub-k", envSites+"="+strings.Join(sites, ","))
	poll.WaitFor(t, "the worker process to take all 20 sites", func() bool { return leases(t, p, "hub-k") == 20 })

	o := newOwners(t)
	b, _ := worker(t, pool(t, url), "hub-b", sites, o, lease.Options{})
	poll.WaitForWithin(t, 20*time.Second, "the two workers to share the sites 10 and 10", func() bool {
		return leases(t, p, "hub-k") == 10 && len(b.Held()) == 10
	})
	before := b.Held()

	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-w.waited
	poll.WaitForWithin(t, 10*time.Second, "hub-b to own all 20 sites within 10 s of the kill", func() bool { return len(b.Held()) == 20 })
	took := time.Since(killed)
	t.Logf("hub-b owns the killed worker's 10 sites %v after SIGKILL", took.Round(10*time.Millisecond))
	for s, e := range b.Held() {
		if _, had := before[s]; !had && e < 2 {
			t.Errorf("site %s taken over at epoch %d, want ≥ 2", s, e)
		}
	}
	if n := leases(t, p, "hub-k"); n != 0 {
		t.Fatalf("the killed worker still has %d live leases", n)
	}
}

// workerProcess is a worker in a process of its own (this test binary
// started again, see TestMain), with env added; it dies with the test.
// Waited is closed once it has exited, after a SIGKILL as at the end.
type workerProcess struct {
	cmd    *exec.Cmd
	waited chan struct{}
}

func startWorkerProcess(t *testing.T, env ...string) *workerProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	out := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workerProcess{cmd: cmd, waited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(w.waited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.waited
		if t.Failed() {
			t.Logf("worker process output:\n%s", out.String())
		}
	})
	return w
}
