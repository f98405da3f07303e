package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// A batch's commit is an ack's promise: nil only once the rows are
// committed and, with a synchronous standby, on the standby. These tests
// run a primary with a synchronous standby and break it under a commit.

// batchOf is a batch of seqs [from, to] of device k1 in site s1.
func batchOf(t *testing.T, st *pgstore.Store, from, to uint64) store.Batch {
	t.Helper()
	b := st.NewBatch()
	for seq := from; seq <= to; seq++ {
		ev, err := event.NewEvent("k1", seq, 1, &event.Report{Category: "facilities", Title: "灯", Building: "B1", Unit: "1-1"})
		if err != nil {
			t.Fatal(err)
		}
		b.PutEvent("s1", &ev, []byte{0xa0})
	}
	return b
}

// commitAsync commits b on its own goroutine; the error comes on the channel.
func commitAsync(b store.Batch) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.Commit() }()
	return done
}

// countOn counts the events of k1 on the server at url.
func countOn(t *testing.T, url string) int {
	t.Helper()
	var n int
	testkit.PGScan(t, url, "SELECT count(*) FROM events WHERE site = 's1' AND device = 'k1'", nil, &n)
	return n
}

// admin runs q on the primary as the test's superuser.
func admin(t *testing.T, p *testkit.PostgresPair, q string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.PrimaryURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// syncWaiter is the pid of the hub's backend waiting for the standby in
// its COMMIT, once there is one.
func syncWaiter(t *testing.T, p *testkit.PostgresPair) int {
	t.Helper()
	var pid int
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.PrimaryURL())
		if err != nil {
			return false, err.Error()
		}
		defer c.Close(context.Background())
		err = c.QueryRow(ctx, "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = 'linli-hub' AND wait_event = 'SyncRep'").Scan(&pid)
		return err == nil && pid != 0, fmt.Sprintf("no hub backend waits for the standby (%v)", err)
	})
	return pid
}

// With the standby gone, a COMMIT waits for it and must not be reported
// done. PostgreSQL does not end that wait at statement_timeout; the
// client's deadline (the URL's statement_timeout, before: always 30 s)
// ends it with an error. A cancel (an operator's pg_cancel_backend) ends
// it with success and a warning: the transaction is committed on the
// primary alone. Before, Commit returned nil for it, and the ingest acked
// events the standby never had.
func TestCommitWithoutStandbyIsNotDone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout string // statement_timeout in the URL
		cancel  bool   // pg_cancel_backend the waiting backend
	}{
		{"deadline", "1000", false},
		{"pg_cancel_backend", "4000", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testkit.StartPostgresPair(t)
			st := open(t, p.PrimaryURL()+"&statement_timeout="+tc.timeout)
			p.StopStandby()
			done := commitAsync(batchOf(t, st, 1, 10))
			if tc.cancel {
				admin(t, p, "SELECT pg_cancel_backend($1)", syncWaiter(t, p))
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("commit returned nil with the synchronous standby stopped")
				}
				t.Logf("commit without the standby: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatalf("commit did not return within 20s, with a %sms statement_timeout in the URL", tc.timeout)
			}
			p.StartStandby()
			// Writing the rows again settles them: the standby has them
			// once the commit returns.
			if err := batchOf(t, st, 1, 10).Commit(); err != nil {
				t.Fatalf("commit with the standby back: %v", err)
			}
			if n := countOn(t, p.StandbyURL()); n != 10 {
				t.Fatalf("the standby has %d of the 10 committed events", n)
			}
		})
	}
}

// A resend of rows the primary holds already (its first commit's wait for
// the standby was cut off) writes nothing new, and a transaction that
// writes nothing did not wait for the standby at all: its COMMIT returned
// at once and the ingest would ack rows only the primary has. Now the
// resend's commit waits for the standby like any other.
func TestResendWaitsForStandby(t *testing.T) {
	p := testkit.StartPostgresPair(t)
	st := open(t, p.PrimaryURL()+"&statement_timeout=1000")
	p.StopStandby()
	if err := batchOf(t, st, 1, 10).Commit(); err == nil {
		t.Fatal("first commit returned nil with the synchronous standby stopped")
	}
	// The client's deadline closed the connection, and pgx sent the
	// server a cancel on its way out: the transaction, committed on the
	// primary, shows there once its wait is cancelled.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		n := countOn(t, p.PrimaryURL())
		return n == 10, fmt.Sprintf("the primary has %d of 10 events from the cut-off commit, want all (committed there)", n)
	})
	start := time.Now()
	if err := batchOf(t, st, 1, 10).Commit(); err == nil {
		t.Fatalf("the resend's commit returned nil after %v with the synchronous standby stopped", time.Since(start))
	}
}

// A commit whose connection dies under it (its backend terminated, or the
// primary restarted) has an unknown outcome. Before, Commit returned the
// error and the ingest dropped the group until the edges resent it; now
// the store runs the (idempotent) transaction again on a fresh connection
// and returns nil once it is committed and on the standby.
func TestCommitRetriedWhenConnectionDies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, p *testkit.PostgresPair, pid int)
	}{
		{"backend terminated", func(t *testing.T, p *testkit.PostgresPair, pid int) {
			admin(t, p, "SELECT pg_terminate_backend($1)", pid)
		}},
		{"primary restarted", func(t *testing.T, p *testkit.PostgresPair, _ int) { p.RestartPrimary() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testkit.StartPostgresPair(t)
			st := open(t, p.PrimaryURL()+"&statement_timeout=30000")
			if err := batchOf(t, st, 1, 5).Commit(); err != nil {
				t.Fatal(err)
			}
			// The standby stopped holds the commit in its wait, so the
			// connection dies under a commit in flight.
			p.StopStandby()
			done := commitAsync(batchOf(t, st, 1, 20))
			tc.fault(t, p, syncWaiter(t, p))
			select {
			case err := <-done:
				t.Fatalf("commit returned %v before the standby was back", err)
			case <-time.After(500 * time.Millisecond):
			}
			p.StartStandby()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("commit: %v, want it retried until it went through", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("commit did not return within 60s of the standby's return")
			}
			if n := countOn(t, p.StandbyURL()); n != 20 {
				t.Fatalf("the standby has %d of 20 events", n)
			}
		})
	}
}
