package pgstore_test

import (
	"context"
	"errors"
	neturl "net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/downlink"
	"linli/hub/lease"
	"linli/hub/pgstore"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/test/netproxy"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// keySite is how the hub names the site of a keyed record: the merged
// state's and the downlink's keys are per site.
func keySite(key []byte) string {
	if s := state.SiteOfKey(key); s != "" {
		return s
	}
	return downlink.SiteOfKey(key)
}

// Every commit calls the fence inside its transaction for each site it
// writes — events, quarantined and rewritten events, device records,
// facts, downlink entries, projected changes — with the real lease
// check: a commit touching a site this worker does not hold stores
// nothing at all, not even its other sites' writes; hub-wide keys need no
// lease.
func TestFencedCommit(t *testing.T) {
	st := open(t, testkit.StartPostgres(t))
	ctx := context.Background()
	// w1 holds "own" at epoch 3; "theirs" is w2's; "gone" has no lease.
	_, err := st.Pool().Exec(ctx, `INSERT INTO site_leases (site, owner, epoch, expires_at) VALUES
		('own', 'w1', 3, now() + interval '1 hour'), ('theirs', 'w2', 1, now() + interval '1 hour')`)
	if err != nil {
		t.Fatal(err)
	}
	var seen [][]string
	st.SetFence(func(ctx context.Context, tx pgx.Tx, site string) error {
		if n := len(seen); n > 0 {
			seen[n-1] = append(seen[n-1], site)
		}
		return lease.Check(ctx, tx, site, "w1", 3)
	}, keySite)

	seq := uint64(0)
	ev := func() *event.Event {
		seq++
		e, err := event.NewEvent("k1", seq, 1, &event.Report{Category: "facilities", Title: "灯", Building: "B1", Unit: "1-1"})
		if err != nil {
			t.Fatal(err)
		}
		return &e
	}
	factKey := func(site string) []byte { return []byte("f/" + site + "/k1/\x00\x00\x00\x00\x00\x00\x00\x01") }
	logKey := func(site string) []byte { return []byte("l/" + site + "/\x00\x00\x00\x00\x00\x00\x00\x01") }
	cases := []struct {
		name   string
		write  func(b store.Batch)
		sites  []string
		commit bool
	}{
		{"an event of its own site", func(b store.Batch) { b.PutEvent("own", ev(), []byte{0xa0}) }, []string{"own"}, true},
		{"an event of another's site", func(b store.Batch) { b.PutEvent("theirs", ev(), []byte{0xa0}) }, []string{"theirs"}, false},
		{"an event of a site without a lease", func(b store.Batch) { b.PutEvent("gone", ev(), []byte{0xa0}) }, []string{"gone"}, false},
		{"a quarantined event", func(b store.Batch) { b.Quarantine("theirs", ev(), []byte{0xa0}, "bad") }, []string{"theirs"}, false},
		{"a rewritten event", func(b store.Batch) { b.RewriteEvent("theirs", ev(), []byte{0xa0}) }, []string{"theirs"}, false},
		{"a device record", func(b store.Batch) { b.PutDevice(&store.DeviceRecord{ID: "k9", Site: "theirs"}) }, []string{"theirs"}, false},
		{"a fact", func(b store.Batch) { b.Set(factKey("theirs"), []byte{0x80}) }, []string{"theirs"}, false},
		{"a deleted downlink entry", func(b store.Batch) { b.Delete(logKey("theirs")) }, []string{"theirs"}, false},
		{"a projected change", func(b store.Batch) {
			b.Project("theirs", []wire.Change{{Entity: wire.EntityNotice, ID: "n1", Deleted: true}})
		}, []string{"theirs"}, false},
		{"its own site and another's together", func(b store.Batch) {
			b.PutEvent("own", ev(), []byte{0xa0})
			b.Set(logKey("theirs"), []byte{0xa0})
			b.Set(factKey("own"), []byte{0x80})
		}, []string{"own", "theirs"}, false},
		{"a hub-wide key", func(b store.Batch) { b.Set([]byte("h/seq/w1"), []byte{1}) }, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before int
			if err := st.Pool().QueryRow(ctx, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM hub_kv) + (SELECT count(*) FROM devices) + (SELECT count(*) FROM quarantine)").Scan(&before); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, nil)
			b := st.NewBatch()
			c.write(b)
			err := b.Commit()
			if got := seen[len(seen)-1]; !slices.Equal(got, c.sites) {
				t.Errorf("fenced sites %q, want %q", got, c.sites)
			}
			var after int
			if err := st.Pool().QueryRow(ctx, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM hub_kv) + (SELECT count(*) FROM devices) + (SELECT count(*) FROM quarantine)").Scan(&after); err != nil {
				t.Fatal(err)
			}
			switch {
			case c.commit && err != nil:
				t.Fatalf("commit: %v", err)
			case c.commit && after == before:
				t.Fatal("committed, but nothing stored")
			case !c.commit && !errors.Is(err, lease.ErrFenced):
				t.Fatalf("commit: %v, want lease.ErrFenced", err)
			case !c.commit && after != before:
				t.Fatalf("a fenced commit stored %d rows", after-before)
			}
		})
	}

	// Without a fence (the Badger-like single hub) nothing is checked.
	st.SetFence(nil, nil)
	b := st.NewBatch()
	b.PutEvent("theirs", ev(), []byte{0xa0})
	if err := b.Commit(); err != nil {
		t.Fatalf("commit without a fence: %v", err)
	}
}

// A worker cut off in the middle of a fenced commit does not keep its
// lease rows locked: the server ends the commit after FenceIdleTimeout,
// another worker's takeover goes through, and nothing of the commit is
// stored.
func TestCutOffFencedCommitReleasesTheLease(t *testing.T) {
	url := testkit.StartPostgres(t)
	direct := open(t, url)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	st := open(t, u.String())
	ctx := context.Background()
	if _, err := direct.Pool().Exec(ctx, `INSERT INTO site_leases (site, owner, epoch, expires_at)
		VALUES ('own', 'w1', 1, now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	cut := make(chan struct{})
	var once sync.Once
	st.SetFence(func(ctx context.Context, tx pgx.Tx, site string) error {
		err := lease.Check(ctx, tx, site, "w1", 1)
		// The first time, the row is locked and the rest of the commit
		// never arrives. The store runs a commit whose connection died
		// again; that run must find the lease taken.
		once.Do(func() {
			proxy.Cut(netproxy.Blackhole)
			close(cut)
		})
		return err
	}, keySite)
	done := make(chan error, 1)
	go func() {
		b := st.NewBatch()
		e, err := event.NewEvent("k1", 1, 1, &event.Report{Category: "facilities", Title: "灯", Building: "B1", Unit: "1-1"})
		if err != nil {
			done <- err
			return
		}
		b.PutEvent("own", &e, []byte{0xa0})
		done <- b.Commit()
	}()
	<-cut
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := direct.Pool().Exec(tctx, `UPDATE site_leases SET owner = 'w2', epoch = epoch + 1 WHERE site = 'own'`); err != nil {
		t.Fatalf("takeover while the cut-off worker's commit holds the lease row: %v", err)
	}
	took := time.Since(start)
	t.Logf("takeover went through %s after the cut", took.Round(100*time.Millisecond))
	if took > pgstore.FenceIdleTimeout+5*time.Second {
		t.Fatalf("takeover took %s, want about FenceIdleTimeout (%s)", took, pgstore.FenceIdleTimeout)
	}
	proxy.Restore()
	if err := <-done; err == nil {
		t.Fatal("the cut-off commit succeeded")
	}
	var n int
	if err := direct.Pool().QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events stored by the cut-off commit (%v)", n, err)
	}
}
