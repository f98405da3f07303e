package e2e

import (
	"fmt"
	neturl "net/url"
	"testing"
	"time"

	"linli/shared/test/poll"
	"linli/shared/test/process"
	"linli/shared/test/testkit"
)

// The real hub binary on PostgreSQL with a synchronous standby (its
// --store the pair's two-host URL, target_session_attrs=read-write), an
// edge's 20,000 check-ins (syncInterrupted), and PostgreSQL broken in the
// middle of the sync. Every answered check-in ends up at the hub exactly
// once (the ledger, through the hub's API), and the events table of the
// server the hub ends on holds each seq once.

// TestPostgresRestartMidSync: the primary restarts (fast shutdown) while
// the hub commits; the hub stays up and the sync completes.
func TestPostgresRestartMidSync(t *testing.T) {
	t.Parallel()
	p := testkit.StartPostgresPair(t)
	h, e := syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		p.RestartPrimary()
	}, "--store", p.URL())
	storedOnce(t, p.PrimaryURL(), e)
	hubStillRunning(t, h)
}

// TestPostgresFailoverMidSync: the primary crashes (immediate shutdown)
// and the standby is promoted with pg_ctl promote; the hub's pool follows
// it on the two-host URL. What the hub acked before the failover is on the
// new primary (it was on the standby before the ack).
func TestPostgresFailoverMidSync(t *testing.T) {
	t.Parallel()
	p := testkit.StartPostgresPair(t)
	h, e := syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		p.StopPrimary()
		acked := e.sync(t).AckedSeq
		p.Promote()
		if n := seqsUpTo(t, p.StandbyURL(), e.ID, acked); n != acked {
			t.Fatalf("the new primary holds %d of the %d events the hub acked before the failover\n"+
				"the count came from: %s\n%s\n%s", n, acked, p.Describe(p.StandbyURL()), answeredBy(e.Proc, e.URL), p.Log())
		}
	}, "--store", p.URL())
	storedOnce(t, p.StandbyURL(), e)
	hubStillRunning(t, h)
}

// TestPostgresStandbyLostMidSync: the standby stops; the hub's commit
// waits for it and the edge's acked seq stands still, also when that wait
// is cancelled (PostgreSQL answers a cancelled wait with success and a
// warning); once the standby is back, acks resume.
func TestPostgresStandbyLostMidSync(t *testing.T) {
	t.Parallel()
	p := testkit.StartPostgresPair(t)
	h, e := syncInterrupted(t, embedded, func(h *hubProc, e *edgeProc) {
		p.StopStandby()
		t.Cleanup(p.StartStandby) // a failing test still lets the hub stop
		poll.Eventually(t, 30*time.Second, func() (bool, string) {
			return hubWaitsForStandby(t, p.PrimaryURL(), false) > 0, "no hub commit waits for the standby"
		})
		// The acks of the commits before the waiting one are on their
		// way: the edge's acked seq settles (the same over 300 ms).
		stalled := poll.Settled(t, 10*time.Second, 300*time.Millisecond, func() uint64 { return e.sync(t).AckedSeq })
		if hubWaitsForStandby(t, p.PrimaryURL(), true) == 0 {
			t.Fatal("no waiting commit to cancel")
		}
		window := time.After(3 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for done := false; !done; {
			select {
			case <-window:
				done = true
			case <-tick.C:
				if s := e.sync(t); s.AckedSeq != stalled {
					t.Fatalf("the edge's acked seq moved from %d to %d while the hub's commit waited for the stopped standby", stalled, s.AckedSeq)
				}
			}
		}
		p.StartStandby()
	}, "--store", p.URL())
	storedOnce(t, p.PrimaryURL(), e)
	storedOnce(t, p.StandbyURL(), e)
	hubStillRunning(t, h)
}

// storedOnce checks that the events table at url holds each of the
// edge's seqs once, up to its last.
func storedOnce(t *testing.T, url string, e *edgeProc) {
	t.Helper()
	want := e.sync(t).LastSeq
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		rows, seqs, last := eventCounts(t, url, e.ID)
		return rows == want && seqs == want && last == want,
			fmt.Sprintf("events table: %d rows, %d seqs, last %d; want each of the %d written once", rows, seqs, last, want)
	})
}

func eventCounts(t *testing.T, url, device string) (rows, seqs, last uint64) {
	t.Helper()
	testkit.PGScan(t, url, `SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM events
		WHERE site = 's1' AND device = $1`, []any{device}, &rows, &seqs, &last)
	return rows, seqs, last
}

// seqsUpTo counts the device's stored seqs up to upto at url.
func seqsUpTo(t *testing.T, url, device string, upto uint64) uint64 {
	t.Helper()
	var n uint64
	testkit.PGScan(t, url, "SELECT count(DISTINCT seq) FROM events WHERE site = 's1' AND device = $1 AND seq <= $2",
		[]any{device, int64(upto)}, &n)
	return n
}

// hubWaitsForStandby counts the hub's connections to url waiting in a
// COMMIT for the synchronous standby, and cancels those waits if cancel.
func hubWaitsForStandby(t *testing.T, url string, cancel bool) int {
	t.Helper()
	q := "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'linli-hub' AND wait_event = 'SyncRep'"
	if cancel {
		q = "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = 'linli-hub' AND wait_event = 'SyncRep'"
	}
	var n int
	testkit.PGScan(t, url, q, nil, &n)
	return n
}

// hubStillRunning fails the test if the hub process exited: a database
// that went away for a while must not take the hub down.
func hubStillRunning(t *testing.T, h *hubProc) {
	t.Helper()
	testkit.WaitHTTP(t, h.URL+"/healthz", 10*time.Second)
}

// answeredBy says whether the process p holds the listener of url, for
// a failing test's message: acks read from a server that is not the
// test's own describe another test's edge.
func answeredBy(p *testkit.Proc, url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return err.Error()
	}
	own, err := process.ListensOn(p.PID(), u.Host)
	return fmt.Sprintf("%s (pid %d) holds the listener on %s: %v (%v)", p.Name, p.PID(), u.Host, own, err)
}
