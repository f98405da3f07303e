package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"linli/hub/ingest"
	"linli/hub/pgstore"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// TestMain stops the tests' PostgreSQL, then checks that every goroutine a
// test started is gone.
func TestMain(m *testing.M) { testkit.PostgresMain(m) }

// eventStore is ingest's Store with the read the API makes of it.
type eventStore interface {
	ingest.Store
	Events(site, device string, after uint64, limit int) ([]event.Event, error)
	Close() error
}

// storeImpl opens one implementation; reopen opens the same store again
// after Close.
type storeImpl struct {
	name string
	open func(t *testing.T) (st eventStore, reopen func() eventStore)
}

var storeImpls = []storeImpl{
	{"badger", func(t *testing.T) (eventStore, func() eventStore) {
		dir := t.TempDir()
		open := func() eventStore {
			st, err := store.Open(dir, kv.Server, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return ingest.BadgerStore{Store: st}
		}
		return open(), open
	}},
	{"postgres", func(t *testing.T) (eventStore, func() eventStore) {
		url := testkit.StartPostgres(t)
		open := func() eventStore {
			st, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return ingest.PostgresStore{Store: st}
		}
		return open(), open
	}},
}

// forEachStore runs f against every implementation of ingest's Store.
func forEachStore(t *testing.T, f func(t *testing.T, st eventStore, reopen func() eventStore)) {
	for _, impl := range storeImpls {
		t.Run(impl.name, func(t *testing.T) {
			st, reopen := impl.open(t)
			cur := st
			t.Cleanup(func() { cur.Close() })
			f(t, st, func() eventStore {
				if err := cur.Close(); err != nil {
					t.Fatal(err)
				}
				cur = reopen()
				return cur
			})
		})
	}
}

// stored is an edge event as ingest hands it to the store: the event
// (device set) and its stored form (device left out).
type stored struct {
	ev      event.Event
	encoded []byte
}

var testClock = hlc.NewClock(nil, 0)

func newStored(t testing.TB, device string, seq uint64) stored {
	t.Helper()
	ev, err := event.NewEvent(device, seq, testClock.Now(), &event.Report{Category: "facilities",
		Title: fmt.Sprintf("楼道灯不亮 %s #%d", device, seq), Building: "B1", Unit: "1-502"})
	if err != nil {
		t.Fatal(err)
	}
	enc := ev
	enc.Device = ""
	b, err := enc.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return stored{ev: ev, encoded: b}
}

func commitGroup(t testing.TB, st ingest.Store, site string, evs []stored, recs ...*store.DeviceRecord) {
	t.Helper()
	b := st.NewBatch()
	for i := range evs {
		b.PutEvent(site, &evs[i].ev, evs[i].encoded)
	}
	for _, d := range recs {
		b.PutDevice(d)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// seqsOf reads every stored seq of a device, checking each event reads
// back as it was stored.
func seqsOf(t testing.TB, st eventStore, site, device string, want map[uint64][]byte) []uint64 {
	t.Helper()
	evs, err := st.Events(site, device, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, ev := range evs {
		if ev.Device != device {
			t.Fatalf("event %d read back with device %q, want %q", ev.Seq, ev.Device, device)
		}
		if w, ok := want[ev.Seq]; ok {
			ev.Device = ""
			got, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, w) {
				t.Fatalf("event %s/%d read back changed", device, ev.Seq)
			}
		}
		seqs = append(seqs, ev.Seq)
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// A group's events read back by device in seq order, each as stored, from
// after and up to limit; other devices and sites stay apart; a reopened
// store still has them.
func TestStoreAppendAndRead(t *testing.T) {
	forEachStore(t, func(t *testing.T, st eventStore, reopen func() eventStore) {
		var group []stored
		want := map[uint64][]byte{}
		for _, seq := range []uint64{5, 1, 3, 2, 4, 10, 300, 256} { // out of order, and past one byte
			s := newStored(t, "k1", seq)
			group, want[seq] = append(group, s), s.encoded
		}
		group = append(group, newStored(t, "k2", 1))
		commitGroup(t, st, "s1", group)
		commitGroup(t, st, "s2", []stored{newStored(t, "k1", 7)})

		all := []uint64{1, 2, 3, 4, 5, 10, 256, 300}
		if got := seqsOf(t, st, "s1", "k1", want); !reflect.DeepEqual(got, all) {
			t.Fatalf("s1/k1 seqs %v, want %v", got, all)
		}
		for _, tc := range []struct {
			after uint64
			limit int
			want  []uint64
		}{
			{0, 3, []uint64{1, 2, 3}},
			{3, 3, []uint64{4, 5, 10}},
			{5, 100, []uint64{10, 256, 300}},
			{10, 1, []uint64{256}},
			{300, 10, nil},
			{0, 0, nil},
		} {
			evs, err := st.Events("s1", "k1", tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, ev := range evs {
				got = append(got, ev.Seq)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("after %d limit %d: seqs %v, want %v", tc.after, tc.limit, got, tc.want)
			}
		}
		if got := seqsOf(t, st, "s1", "k2", nil); !reflect.DeepEqual(got, []uint64{1}) {
			t.Fatalf("s1/k2 seqs %v, want [1]", got)
		}
		if got := seqsOf(t, st, "s2", "k1", nil); !reflect.DeepEqual(got, []uint64{7}) {
			t.Fatalf("s2/k1 seqs %v, want [7]: sites must stay apart", got)
		}
		if got := seqsOf(t, st, "s1", "nobody", nil); len(got) != 0 {
			t.Fatalf("unknown device has seqs %v", got)
		}

		st = reopen()
		if got := seqsOf(t, st, "s1", "k1", want); !reflect.DeepEqual(got, all) {
			t.Fatalf("after reopening: s1/k1 seqs %v, want %v", got, all)
		}
	})
}

// An edge resends what it has no ack for: a group sent again, or one that
// overlaps what is stored, leaves each event stored once.
func TestStoreDuplicatesIgnored(t *testing.T) {
	forEachStore(t, func(t *testing.T, st eventStore, _ func() eventStore) {
		want := map[uint64][]byte{}
		var first []stored
		for seq := uint64(1); seq <= 50; seq++ {
			s := newStored(t, "k1", seq)
			first, want[seq] = append(first, s), s.encoded
		}
		commitGroup(t, st, "s1", first)
		commitGroup(t, st, "s1", first)
		overlap := append([]stored{}, first[40:]...)
		for seq := uint64(51); seq <= 60; seq++ {
			s := newStored(t, "k1", seq)
			overlap, want[seq] = append(overlap, s), s.encoded
		}
		overlap = append(overlap, overlap[0], overlap[len(overlap)-1]) // twice in one group too
		commitGroup(t, st, "s1", overlap)
		if got := seqsOf(t, st, "s1", "k1", want); !reflect.DeepEqual(got, seqRange(1, 60)) {
			t.Fatalf("seqs %v, want 1..60 once each", got)
		}
	})
}

// Device records come back as they were put, every field; the last put of
// a device wins; a discarded batch leaves nothing.
func TestStoreDeviceRecords(t *testing.T) {
	forEachStore(t, func(t *testing.T, st eventStore, reopen func() eventStore) {
		at := time.Date(2026, 3, 1, 9, 30, 15, 0, time.UTC)
		full := store.DeviceRecord{ID: "k1", Site: "s1", Role: "kiosk", Version: "v1.2", Acked: 40,
			Above: []store.Range{{From: 42, To: 45}, {From: 50, To: 50}}, Received: 44, Rejected: 1,
			First: at, LastSeen: at.Add(time.Hour), Online: true, Pending: 7, LastSeq: 50, SkewMs: -1200,
			Down: 9, Oldest: at.Add(time.Minute), Lost: 3, Gaps: []store.Range{{From: 10, To: 12}}}
		other := store.DeviceRecord{ID: "g1", Site: "s2", Role: "gateway", Acked: 1, Received: 1, First: at}
		commitGroup(t, st, "s1", nil, &store.DeviceRecord{ID: "k1", Site: "s1", Acked: 1}, &other)
		commitGroup(t, st, "s1", []stored{newStored(t, "k1", 1)}, &full)

		b := st.NewBatch()
		gone := store.DeviceRecord{ID: "k9", Site: "s1"}
		b.PutDevice(&gone)
		ev := newStored(t, "k9", 1)
		b.PutEvent("s1", &ev.ev, ev.encoded)
		b.Discard()

		check := func(st eventStore) {
			t.Helper()
			recs, err := st.Devices()
			if err != nil {
				t.Fatal(err)
			}
			byID := map[string]store.DeviceRecord{}
			for _, r := range recs {
				byID[r.ID] = r
			}
			if len(byID) != 2 {
				t.Fatalf("%d device records %v, want k1 and g1", len(recs), recs)
			}
			if !sameRecord(t, byID["k1"], full) {
				t.Fatalf("k1 read back as\n%+v\nwant\n%+v", byID["k1"], full)
			}
			if !sameRecord(t, byID["g1"], other) {
				t.Fatalf("g1 read back as %+v, want %+v", byID["g1"], other)
			}
			if got := seqsOf(t, st, "s1", "k9", nil); len(got) != 0 {
				t.Fatalf("a discarded batch stored events %v", got)
			}
		}
		check(st)
		check(reopen())
	})
}

// Groups committed at once from many goroutines, overlapping in devices
// and seqs, store each event exactly once and lose none.
func TestStoreConcurrentGroups(t *testing.T) {
	forEachStore(t, func(t *testing.T, st eventStore, _ func() eventStore) {
		const writers, groups, per, devices = 6, 10, 25, 3
		// Writer w commits seqs [w*per*groups/2+1, …]: each overlaps the
		// next writer's by half, so keys are contended.
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				base := uint64(w * per * groups / 2)
				for g := range groups {
					b := st.NewBatch()
					for d := range devices {
						dev := fmt.Sprintf("k%d", d)
						for i := range per {
							s := newStored(t, dev, base+uint64(g*per+i)+1)
							b.PutEvent("s1", &s.ev, s.encoded)
						}
						b.PutDevice(&store.DeviceRecord{ID: dev, Site: "s1", Acked: base + uint64(g*per)})
					}
					if err := b.Commit(); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		last := uint64((writers-1)*per*groups/2 + groups*per)
		for d := range devices {
			dev := fmt.Sprintf("k%d", d)
			if got := seqsOf(t, st, "s1", dev, nil); !reflect.DeepEqual(got, seqRange(1, last)) {
				t.Fatalf("%s: %d seqs, want 1..%d once each", dev, len(got), last)
			}
		}
		recs, err := st.Devices()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != devices {
			t.Fatalf("%d device records, want %d", len(recs), devices)
		}
	})
}

// sameRecord compares device records field by field, times by instant.
func sameRecord(t testing.TB, a, b store.DeviceRecord) bool {
	t.Helper()
	for _, p := range []struct{ a, b *time.Time }{{&a.First, &b.First}, {&a.LastSeen, &b.LastSeen}, {&a.Oldest, &b.Oldest}} {
		if !p.a.Equal(*p.b) {
			return false
		}
		*p.a, *p.b = time.Time{}, time.Time{}
	}
	return reflect.DeepEqual(a, b)
}

// The ingest pipeline commits to PostgreSQL as it does to Badger, the
// merged state with it: a batch sent twice is stored once, the device
// record follows, the report's fact and its downlink change are in the
// same transaction, and the ack comes after the commit.
func TestIngestOnPostgres(t *testing.T) {
	url := testkit.StartPostgres(t)
	pg, err := pgstore.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	tr := newTransport(true, nil)
	h := runIngestOn(t, tr, pg, true, 1)

	const site, device = "s1", "k1"
	up, ack := wire.Topic(site, device, wire.LeafUp), wire.Topic(site, device, wire.LeafAck)
	var evs []event.Event
	for seq := uint64(1); seq <= 3; seq++ {
		ev, err := event.NewEvent("", seq, testClock.Now(), &event.Report{Category: "facilities", Title: fmt.Sprint("灯 ", seq), Building: "B1"})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	b, err := wire.NewBatch(1, 3, evs, false, testClock.Now())
	if err != nil {
		t.Fatal(err)
	}
	// One after the other: two deliveries in one commit group get one ack.
	tr.deliverUp(t, up, wire.Up{Batch: b})
	poll.WaitFor(t, "the first ack", func() bool { return tr.count(ack) == 1 })
	tr.deliverUp(t, up, wire.Up{Batch: b})
	poll.WaitFor(t, "the resend's ack", func() bool { return tr.count(ack) == 2 })
	tr.mu.Lock()
	last := tr.published[ack][1]
	tr.mu.Unlock()
	a, err := wire.DecodeAck(last)
	if err != nil {
		t.Fatal(err)
	}
	if a.Acked != 3 {
		t.Fatalf("acked %d, want 3", a.Acked)
	}
	if got := seqsOf(t, ingest.PostgresStore{Store: pg}, site, device, nil); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Fatalf("seqs in PostgreSQL %v, want 1..3 once each", got)
	}
	recs, err := pg.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != device || recs[0].Acked != 3 || recs[0].Received != 3 {
		t.Fatalf("device records %+v, want k1 acked 3 with 3 received", recs)
	}
	// The facts and the three reports' log entries are rows of hub_kv.
	var facts, changes int
	err = pg.Pool().QueryRow(context.Background(), `SELECT
		count(*) FILTER (WHERE key >= 'f/'::bytea AND key < 'f0'::bytea),
		count(*) FILTER (WHERE key >= 'l/'::bytea AND key < 'l0'::bytea) FROM hub_kv`).Scan(&facts, &changes)
	if err != nil {
		t.Fatal(err)
	}
	if facts != 1 || changes != 3 || h.down.Head(site) != 3 {
		t.Fatalf("%d fact keys and %d downlink entries in PostgreSQL, head %d; want 1 (the commit's three seqs) and 3", facts, changes, h.down.Head(site))
	}
}
