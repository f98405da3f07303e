package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"

	"linli/edge/store"
	"linli/shared/event"
	"linli/shared/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// testStores are the edge stores the tests opened, by dir.
var testStores sync.Map

// openStore opens the edge's store in dir as the edge program does. A
// store the test opened on dir before is closed first (its log closed
// first, as at a restart); the last one closes when the test ends.
func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	if old, ok := testStores.LoadAndDelete(dir); ok {
		if err := old.(*store.Store).Close(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(store.Options{Dir: dir, GCInterval: time.Hour})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	testStores.Store(dir, st)
	t.Cleanup(func() {
		testStores.CompareAndDelete(dir, st)
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

func open(t *testing.T, dir string, c *clock) *Log {
	t.Helper()
	opts := Options{Device: "kiosk-1", Retention: time.Hour, RetentionInterval: time.Hour}
	if c != nil {
		opts.Now = c.now
	}
	l, err := Open(openStore(t, dir).DB(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func checkin(i int) *event.Checkin {
	return &event.Checkin{Resident: fmt.Sprintf("R%d", i), Activity: "A7", Action: "in", Status: event.StatusRecorded}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, nil)
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		ev, err := l.Append(ctx, checkin(i))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != uint64(i) || ev.Device != "kiosk-1" || ev.HLC == 0 {
			t.Fatalf("append %d: got %+v", i, ev)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, nil)
	defer l.Close()
	if st := l.Stats(); st.LastSeq != 10 || st.Pending != 10 || st.AckedSeq != 0 {
		t.Fatalf("after reopen Stats = %+v", st)
	}
	evs, err := l.Read(3, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[0].Seq != 4 || evs[3].Seq != 7 {
		t.Fatalf("Read(3,4) = %d events from %d", len(evs), evs[0].Seq)
	}
	body, err := evs[0].Decode()
	if err != nil || body.(*event.Checkin).Resident != "R4" {
		t.Fatalf("decode: %+v %v", body, err)
	}
	ev, err := l.Append(ctx, checkin(11))
	if err != nil || ev.Seq != 11 || ev.HLC <= evs[3].HLC {
		t.Fatalf("append after reopen: %+v %v", ev, err)
	}
}

func TestReadByteLimit(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	for i := range 20 {
		if _, err := l.Append(context.Background(), checkin(i)); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := l.Read(0, 100, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("Read with 1 byte limit = %d events, %v; want exactly 1", len(evs), err)
	}
	evs, _ = l.Read(0, 100, 200)
	if len(evs) < 2 || len(evs) > 10 {
		t.Fatalf("Read with 200 byte limit = %d events", len(evs))
	}
}

func TestConcurrentAppendsGroupCommit(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	const writers, each = 32, 40
	var wg sync.WaitGroup
	seen := make([]bool, writers*each+1)
	var mu sync.Mutex
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ev, err := l.Append(context.Background(), checkin(w*each+i))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if ev.Seq == 0 || ev.Seq >= uint64(len(seen)) || seen[ev.Seq] {
					mu.Unlock()
					errs <- fmt.Errorf("seq %d out of range or given twice", ev.Seq)
					return
				}
				seen[ev.Seq] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.LastSeq != writers*each || st.Pending != writers*each {
		t.Fatalf("Stats = %+v, want %d events", st, writers*each)
	}
	if st.Commits >= writers*each {
		t.Fatalf("%d commits for %d appends: concurrent writers did not share commits", st.Commits, writers*each)
	}
	t.Logf("%d appends in %d commits", writers*each, st.Commits)
}

func TestAckAndPending(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	for i := range 10 {
		if _, err := l.Append(context.Background(), checkin(i)); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		seq     uint64
		hello   bool
		acked   uint64
		pending uint64
	}{
		{4, false, 4, 6},
		{2, false, 4, 6}, // acks never move back...
		{2, true, 2, 8},  // ...unless the hub says so in a hello
		{99, false, 10, 0},
	}
	for _, s := range steps {
		if err := l.Ack(s.seq, s.hello); err != nil {
			t.Fatal(err)
		}
		if st := l.Stats(); st.AckedSeq != s.acked || st.Pending != s.pending {
			t.Fatalf("after Ack(%d, %v): %+v, want acked %d pending %d", s.seq, s.hello, st, s.acked, s.pending)
		}
	}
	oldest, err := l.OldestUnacked()
	if err != nil || oldest != 0 {
		t.Fatalf("OldestUnacked with nothing pending = %v, %v", oldest, err)
	}
}

func TestPruneKeepsUnackedAndYoung(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	l := open(t, t.TempDir(), c)
	defer l.Close()
	for i := range 5 {
		if _, err := l.Append(context.Background(), checkin(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.add(2 * time.Hour)
	for i := range 5 {
		if _, err := l.Append(context.Background(), checkin(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Ack(3, false); err != nil {
		t.Fatal(err)
	}
	n, err := l.Prune()
	if err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want the 3 acked old events", n, err)
	}
	if err := l.Ack(10, false); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Prune(); n != 2 {
		t.Fatalf("Prune = %d; want the 2 remaining old events, not the young ones", n)
	}
	evs, _ := l.Read(0, 100, 1<<20)
	if len(evs) != 5 || evs[0].Seq != 6 {
		t.Fatalf("left %d events starting at %d, want 5 from 6", len(evs), evs[0].Seq)
	}
}

func TestBadInputAndClosed(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, nil)
	var fe *event.FieldError
	if _, err := l.Append(context.Background(), &event.Checkin{Activity: "A7", Action: "in"}); !errors.As(err, &fe) {
		t.Fatalf("Append of invalid body = %v, want FieldError", err)
	}
	if st := l.Stats(); st.LastSeq != 0 {
		t.Fatalf("invalid body was stored: %+v", st)
	}
	if _, err := store.Open(store.Options{Dir: dir}); !errors.Is(err, kv.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), checkin(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestClockNeverBackAfterRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	l := open(t, dir, c)
	last, err := l.Append(context.Background(), checkin(1))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	c.add(-24 * time.Hour)
	l = open(t, dir, c)
	defer l.Close()
	ev, err := l.Append(context.Background(), checkin(2))
	if err != nil || ev.HLC <= last.HLC {
		t.Fatalf("HLC after restart with clock 24h back = %v, want > %v (%v)", ev.HLC, last.HLC, err)
	}
}

// Decisions taken by builders are serialised and atomic with their events:
// concurrent builders each see the writes of those before them.
func TestAppendFuncDecidesAtomically(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	key := []byte("x/seats-used")
	const n, seats = 60, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev, err := l.AppendFunc(context.Background(), event.KindCheckin, func(txn *badger.Txn) (event.Body, error) {
				used, err := kv.GetU64(txn, key)
				if err != nil {
					return nil, err
				}
				c := checkin(i)
				c.Status = event.StatusWaitlisted
				if used < seats {
					c.Status = event.StatusConfirmed
					if err := txn.Set(key, kv.U64(used+1)); err != nil {
						return nil, err
					}
				}
				return c, nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			b, err := ev.Decode()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			outcomes[b.(*event.Checkin).Status]++
			mu.Unlock()
		}()
	}
	// A builder that fails takes only itself down.
	if _, err := l.AppendFunc(context.Background(), event.KindCheckin, func(*badger.Txn) (event.Body, error) {
		return nil, errors.New("no")
	}); err == nil {
		t.Error("failing builder: want its error")
	}
	wg.Wait()
	if outcomes[event.StatusConfirmed] != seats || outcomes[event.StatusWaitlisted] != n-seats {
		t.Fatalf("outcomes %v, want %d confirmed and %d waitlisted", outcomes, seats, n-seats)
	}
	if st := l.Stats(); st.LastSeq != n {
		t.Fatalf("last seq %d, want %d (no gap for the failed builder)", st.LastSeq, n)
	}
}

func TestRewriteAnonymises(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	for i := range 1200 { // more than one rewrite chunk
		who := "R1"
		if i%3 == 0 {
			who = "R2"
		}
		if _, err := l.Append(context.Background(), &event.Checkin{Resident: who, Activity: "A1", Action: "in"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := l.Rewrite(func(ev *event.Event) (event.Body, bool) {
		b, err := ev.Decode()
		if err != nil {
			return nil, false
		}
		return event.Anonymise(b, "R2", "erased-x")
	})
	if err != nil || n != 400 {
		t.Fatalf("Rewrite = %d, %v; want 400", n, err)
	}
	evs, err := l.Read(0, 2000, 1<<30)
	if err != nil || len(evs) != 1200 {
		t.Fatalf("read back %d, %v", len(evs), err)
	}
	for i, ev := range evs {
		b, _ := ev.Decode()
		got := b.(*event.Checkin).Resident
		want := "R1"
		if i%3 == 0 {
			want = "erased-x"
		}
		if got != want || ev.Seq != uint64(i+1) {
			t.Fatalf("event %d: resident %q seq %d, want %q", i, got, ev.Seq, want)
		}
	}
}

// Many long reports at once split into groups that fit one transaction;
// none fails as too big.
func TestLongReportsShareCommitsWithoutFailing(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	desc := strings.Repeat("楼", 2000) // 6 KB of UTF-8
	var wg sync.WaitGroup
	errs := make(chan error, 1024)
	for w := range 512 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2 {
				_, err := l.Append(context.Background(), &event.Report{Category: "noise", Title: fmt.Sprintf("r%d-%d", w, i), Description: desc, Building: "B1"})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := l.Stats(); st.LastSeq != 1024 {
		t.Fatalf("stored %d of 1024 long reports", st.LastSeq)
	}
}
