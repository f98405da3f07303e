package faults

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/edge/outbox"
	"linli/edge/uplink"
	"linli/hub/broker"
	"linli/hub/ingest"
	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/edgetest"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// A sync to a hub on PostgreSQL with a synchronous standby, broken in the
// middle: the hub's ingest on ingest.PostgresStore, the embedded broker on
// loopback, and an edge's real outbox (Badger) and uplink. The edge keeps
// writing while it syncs; the fault comes once part of it is acked.

const (
	pgSite   = "s1"
	pgDevice = "gw-pg"
	pgEvents = 20_000
)

// pgSync is one edge syncing to an ingest on PostgreSQL.
type pgSync struct {
	store    *pgstore.Store
	ingest   *ingest.Ingest
	outbox   *outbox.Log
	acked    atomic.Uint64 // the highest ack the hub published
	appended atomic.Uint64
	ackMu    sync.Mutex
	ackAt    []ackSeen // every ack the hub published, in order
}

type ackSeen struct {
	seq uint64
	at  time.Time
}

// startPGSync starts the hub side on url and the edge, which appends
// pgEvents events while its uplink syncs them.
func startPGSync(t *testing.T, url string) *pgSync {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := pgstore.Open(context.Background(), url, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	in, err := ingest.New(ingest.Options{Store: ingest.PostgresStore{Store: st}, Transport: b,
		Clock: hlc.NewClock(nil, 0), AllowUnsigned: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s := &pgSync{store: st, ingest: in}
	if err := b.Subscribe(wire.Topic(pgSite, pgDevice, wire.LeafAck), func(_ string, payload []byte) {
		a, err := wire.DecodeAck(payload)
		if err != nil {
			t.Errorf("decode ack: %v", err)
			return
		}
		s.ackMu.Lock()
		s.ackAt = append(s.ackAt, ackSeen{a.Acked, time.Now()})
		if a.Acked > s.acked.Load() {
			s.acked.Store(a.Acked)
		}
		s.ackMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	ictx, stopIngest := context.WithCancel(context.Background())
	idone := make(chan error, 1)
	go func() { idone <- in.Run(ictx) }()
	t.Cleanup(func() {
		stopIngest()
		if err := <-idone; err != nil {
			t.Error(err)
		}
	})
	poll.WaitFor(t, "the ingest to subscribe", in.Subscribed)

	l, _, err := edgetest.OpenLog(t, filepath.Join(t.TempDir(), "edge"), outbox.Options{Device: pgDevice,
		Retention: time.Hour, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.outbox = l
	t.Cleanup(func() { l.Close() })
	// Cleanups run last first: the edge's writers and uplink stop, then
	// the outbox closes, then the ingest, broker and store stop.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	up := uplink.New(l, nil, uplink.Options{Broker: "tcp://" + b.Addr(), Site: pgSite, Device: pgDevice,
		Role: "gateway", BatchEvents: 250, Window: 8, AckTimeout: 2 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Logger: log})
	wg.Go(func() {
		if err := up.Run(ctx); err != nil {
			t.Errorf("uplink: %v", err)
		}
	})
	// Writers at once, as a busy gateway's door and sensor handlers.
	var next atomic.Uint64
	for range 32 {
		wg.Go(func() {
			for n := next.Add(1); n <= pgEvents; n = next.Add(1) {
				body := &event.Access{Door: fmt.Sprintf("B1-%d", n%4), Credential: fmt.Sprintf("h:%016x", n), Result: "granted", Building: "B1"}
				if _, err := l.Append(ctx, body); err != nil {
					if ctx.Err() == nil {
						t.Errorf("append: %v", err)
					}
					return
				}
				s.appended.Add(1)
			}
		})
	}
	return s
}

// midSync waits until at least part of the sync is acked and more is to
// come, and returns the hub's highest ack then.
func (s *pgSync) midSync(t *testing.T) uint64 {
	t.Helper()
	poll.Eventually(t, 60*time.Second, func() (bool, string) {
		return s.acked.Load() >= 2_000, fmt.Sprintf("acked %d, appended %d", s.acked.Load(), s.appended.Load())
	})
	a := s.acked.Load()
	if a >= pgEvents {
		t.Fatalf("the whole sync was acked (%d) before the fault", a)
	}
	return a
}

// drained waits until the edge has every event acked.
func (s *pgSync) drained(t *testing.T, within time.Duration) {
	t.Helper()
	poll.Eventually(t, within, func() (bool, string) {
		_, acked, pending := s.outbox.Cursors()
		return acked == pgEvents && pending == 0, fmt.Sprintf("edge acked %d, %d pending; hub acked %d; ingest %+v",
			acked, pending, s.acked.Load(), s.ingest.Stats())
	})
}

// presentOnce checks that the database at url holds seqs 1..upto of the
// edge's device exactly once each, and, when full, each as the edge
// stored it and nothing above.
func (s *pgSync) presentOnce(t *testing.T, url string, upto uint64, full bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n, distinct, below uint64
	if err := c.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), count(*) FILTER (WHERE seq <= $3)
		FROM events WHERE site = $1 AND device = $2`, pgSite, pgDevice, int64(upto)).Scan(&n, &distinct, &below); err != nil {
		t.Fatal(err)
	}
	if below != upto || distinct != n {
		t.Fatalf("%d of the %d acked events present (%d rows, %d distinct seqs)", below, upto, n, distinct)
	}
	if !full {
		return
	}
	if n != upto {
		t.Fatalf("%d events stored, want %d", n, upto)
	}
	want, err := s.outbox.Read(0, pgEvents+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT seq, body FROM events WHERE site = $1 AND device = $2 ORDER BY seq", pgSite, pgDevice)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			t.Fatal(err)
		}
		ev, err := event.DecodeEvent(body)
		if err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
		w := want[i]
		if uint64(seq) != w.Seq || ev.HLC != w.HLC || ev.Kind != w.Kind || !bytes.Equal(ev.Body, w.Body) {
			t.Fatalf("event %d stored as %+v, the edge has %+v", seq, ev, w)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// PostgreSQL restarts (fast shutdown, as pg_ctl restart) in the middle of
// the sync: the commit in flight loses its connection and is run again on
// a new one; the sync completes, and every acked event is stored exactly
// once.
func TestSyncSurvivesPostgresRestart(t *testing.T) {
	p := testkit.StartPostgresPair(t)
	s := startPGSync(t, p.URL())
	before := s.midSync(t)
	p.RestartPrimary()
	s.presentOnce(t, p.PrimaryURL(), before, false)
	s.drained(t, 90*time.Second)
	s.presentOnce(t, p.PrimaryURL(), pgEvents, true)
	t.Logf("restart at %d of %d acked; %d commits retried; %+v", before, pgEvents, s.store.CommitRetries(), s.ingest.Stats())
}

// The primary dies in the middle of the sync and its synchronous standby
// is promoted (pg_ctl promote): the hub's pool, on the two-host URL with
// target_session_attrs=read-write, follows it. Every event acked before
// the failover is on the new primary (it was on the standby before its
// ack), and after the sync completes there every event is stored exactly
// once.
func TestSyncFollowsFailover(t *testing.T) {
	p := testkit.StartPostgresPair(t)
	s := startPGSync(t, p.URL())
	s.midSync(t)
	p.StopPrimary()
	// A commit can no longer return: every ack from here on answers one
	// that returned before the primary stopped.
	acked := s.acked.Load()
	p.Promote()
	s.presentOnce(t, p.StandbyURL(), acked, false)
	s.drained(t, 90*time.Second)
	s.presentOnce(t, p.StandbyURL(), pgEvents, true)
	t.Logf("failover at %d of %d acked; %d commits retried; %+v", acked, pgEvents, s.store.CommitRetries(), s.ingest.Stats())
}

// The standby is lost in the middle of the sync: the hub's commit waits
// for it, and no ack goes out while it waits (the edge resends meanwhile,
// its ack timeout being 2 s, and gets no answer either), even when the
// wait is cancelled (pg_cancel_backend, as an operator or a pooler may):
// PostgreSQL then answers the COMMIT with success and a warning, and
// before, the hub acked those events, which the standby did not have.
// Once the standby is back the waiting commit returns, acks resume, and
// the sync completes with every event stored exactly once on both
// servers.
func TestSyncStallsWithoutStandby(t *testing.T) {
	p := testkit.StartPostgresPair(t)
	s := startPGSync(t, p.URL())
	s.midSync(t)
	p.StopStandby()
	// Should the test fail while it is stopped, the ingest's waiting
	// commit must still end for the ingest to stop.
	t.Cleanup(p.StartStandby)
	// Once a commit waits, the acks of the commits before it are on
	// their way (the ack loop publishes them while the next commits):
	// the acked seq settles.
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		return syncWaiting(t, p.PrimaryURL()), "no hub commit waits for the standby"
	})
	stalled := poll.Settled(t, 10*time.Second, 300*time.Millisecond, s.acked.Load)
	waitFrom := time.Now()
	if n := cancelSyncWaits(t, p.PrimaryURL()); n == 0 {
		t.Fatal("no waiting commit to cancel")
	}
	window := time.After(3 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
watch:
	for {
		select {
		case <-window:
			break watch
		case <-tick.C:
			if a := s.acked.Load(); a != stalled {
				t.Fatalf("the hub acked %d while its commit waited for the stopped standby (acked %d when the wait began)", a, stalled)
			}
		}
	}
	if !syncWaiting(t, p.PrimaryURL()) {
		t.Fatal("the hub's commit stopped waiting for the standby before it was back")
	}
	var late int
	s.ackMu.Lock()
	for _, a := range s.ackAt {
		if a.at.After(waitFrom) && a.seq > stalled {
			late++
		}
	}
	s.ackMu.Unlock()
	if late > 0 {
		t.Fatalf("%d acks above %d went out while the standby was stopped", late, stalled)
	}
	p.StartStandby()
	s.drained(t, 90*time.Second)
	s.presentOnce(t, p.PrimaryURL(), pgEvents, true)
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		n := maxSeq(t, p.StandbyURL())
		return n == pgEvents, fmt.Sprintf("the standby holds up to %d", n)
	})
	s.presentOnce(t, p.StandbyURL(), pgEvents, true)
	t.Logf("standby lost at %d of %d acked; %+v", stalled, pgEvents, s.ingest.Stats())
}

// cancelSyncWaits cancels the hub's commits waiting for the standby on
// the server at url and returns how many it cancelled.
func cancelSyncWaits(t *testing.T, url string) int {
	t.Helper()
	var n int
	testkit.PGScan(t, url, "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = 'linli-hub' AND wait_event = 'SyncRep'", nil, &n)
	return n
}

// syncWaiting reports whether one of the hub's connections to the server
// at url waits in its COMMIT for the synchronous standby.
func syncWaiting(t *testing.T, url string) bool {
	t.Helper()
	var n int
	testkit.PGScan(t, url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'linli-hub' AND wait_event = 'SyncRep'", nil, &n)
	return n > 0
}

// maxSeq is the highest stored seq of the edge's device at url.
func maxSeq(t *testing.T, url string) uint64 {
	t.Helper()
	var n int64
	testkit.PGScan(t, url, "SELECT coalesce(max(seq), 0) FROM events WHERE site = $1 AND device = $2", []any{pgSite, pgDevice}, &n)
	return uint64(n)
}
