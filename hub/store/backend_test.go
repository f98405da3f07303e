package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/storetest"
)

// scan lists the keys and values under prefix from from, since since.
func scan(t *testing.T, st store.Backend, prefix, from string, since uint64) []string {
	t.Helper()
	var out []string
	err := st.View(func(v store.View) error {
		var f []byte
		if from != "" {
			f = []byte(from)
		}
		return v.Scan([]byte(prefix), f, since, func(k, val []byte, _ uint64) (bool, error) {
			out = append(out, string(k)+"="+string(val))
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func get(t *testing.T, st store.Backend, key string) (string, uint64, error) {
	t.Helper()
	var val []byte
	var ver uint64
	err := st.View(func(v store.View) error {
		var err error
		val, ver, err = v.Get([]byte(key))
		return err
	})
	return string(val), ver, err
}

// The hub's keyed records behave alike in both stores: byte-ordered
// prefix scans from a key and since a read mark, early stops, deletes, a
// batch that reads its own writes, a discarded batch that stores
// nothing, and everything back after a reopen.
func TestKeyedRecords(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
		b := st.NewBatch()
		for _, k := range []string{"t/b", "t/a", "t/c\xff", "t/c", "u/a", "t"} {
			b.Set([]byte(k), []byte("v"+k))
		}
		b.Set([]byte("t/empty"), nil)
		if got, err := b.Get([]byte("t/a")); err != nil || string(got) != "vt/a" {
			t.Fatalf("batch read of its own write: %q, %v", got, err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		want := []string{"t/a=vt/a", "t/b=vt/b", "t/c=vt/c", "t/c\xff=vt/c\xff", "t/empty="}
		if got := scan(t, st, "t/", "", 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("scan t/: %q, want %q", got, want)
		}
		if got := scan(t, st, "t/", "t/b", 0); !reflect.DeepEqual(got, want[1:]) {
			t.Fatalf("scan t/ from t/b: %q, want %q", got, want[1:])
		}
		var first []string
		err := st.View(func(v store.View) error {
			return v.Scan([]byte("t/"), nil, 0, func(k, _ []byte, _ uint64) (bool, error) {
				first = append(first, string(k))
				return false, nil
			})
		})
		if err != nil || !reflect.DeepEqual(first, []string{"t/a"}) {
			t.Fatalf("a scan stopped at its first key saw %q, %v", first, err)
		}

		mark, err := st.ReadMark()
		if err != nil {
			t.Fatal(err)
		}
		b = st.NewBatch()
		b.Set([]byte("t/b"), []byte("again"))
		b.Delete([]byte("t/c"))
		b.Set([]byte("t/d"), []byte("new"))
		if got, err := b.Get([]byte("t/c")); err != nil || got != nil {
			t.Fatalf("batch read of its own delete: %q, %v", got, err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if got, want := scan(t, st, "t/", "", mark), []string{"t/b=again", "t/d=new"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("scan since the mark: %q, want the two written after it %q", got, want)
		}
		if _, ver, err := get(t, st, "t/b"); err != nil || ver <= mark {
			t.Fatalf("version of a key written after the mark %d: %d, %v", mark, ver, err)
		}
		if _, ver, err := get(t, st, "t/a"); err != nil || ver > mark {
			t.Fatalf("version of a key written before the mark %d: %d, %v", mark, ver, err)
		}

		b = st.NewBatch()
		b.Set([]byte("t/zz"), []byte("discarded"))
		b.Discard()
		st = reopen()
		if _, _, err := get(t, st, "t/zz"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a discarded write: %v, want ErrNotFound", err)
		}
		if _, _, err := get(t, st, "t/c"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a deleted key: %v, want ErrNotFound", err)
		}
		if got, want := scan(t, st, "t/", "", 0), []string{"t/a=vt/a", "t/b=again", "t/c\xff=vt/c\xff", "t/d=new", "t/empty="}; !reflect.DeepEqual(got, want) {
			t.Fatalf("after a reopen: %q, want %q", got, want)
		}
		if got := scan(t, st, "u/", "", 0); !reflect.DeepEqual(got, []string{"u/a=vu/a"}) {
			t.Fatalf("scan u/: %q", got)
		}
	})
}

// Stored events read through a view, one by one (as facts name them), and
// rewritten in place or stored when not yet there, in both stores.
func TestViewEventsAndRewrites(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		put := func(b store.Batch, seq uint64, title string, rewrite bool) {
			ev, err := event.NewEvent("k1", seq, hlc.NewClock(nil, 0).Now(), &event.Report{Category: event.Categories[0], Title: title, Building: "B1"})
			if err != nil {
				t.Fatal(err)
			}
			stored := ev
			stored.Device = ""
			enc, err := stored.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if rewrite {
				b.RewriteEvent("s1", &ev, enc)
			} else {
				b.PutEvent("s1", &ev, enc)
			}
		}
		b := st.NewBatch()
		for seq := uint64(1); seq <= 1200; seq++ {
			if seq != 600 {
				put(b, seq, fmt.Sprint("r", seq), false)
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b = st.NewBatch()
		put(b, 7, "rewritten", true)
		put(b, 600, "stored by a rewrite", true)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		title := func(ev event.Event) string {
			body, err := ev.Decode()
			if err != nil {
				t.Fatal(err)
			}
			return body.(*event.Report).Title
		}
		err := st.View(func(v store.View) error {
			for _, seq := range []uint64{1, 2, 7, 599, 600, 601, 1200, 3, 1100} {
				ev, err := v.Event("s1", "k1", seq)
				if err != nil {
					return fmt.Errorf("event %d: %w", seq, err)
				}
				want := fmt.Sprint("r", seq)
				switch seq {
				case 7:
					want = "rewritten"
				case 600:
					want = "stored by a rewrite"
				}
				if ev.Seq != seq || ev.Device != "k1" || title(ev) != want {
					return fmt.Errorf("event %d: %s.%d %q, want %q", seq, ev.Device, ev.Seq, title(ev), want)
				}
			}
			for _, k := range []struct {
				device string
				seq    uint64
			}{{"k1", 1201}, {"k2", 1}, {"k1", 0}} {
				if _, err := v.Event("s1", k.device, k.seq); !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("event %s.%d: %v, want ErrNotFound", k.device, k.seq, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// The backup horizon, the resync marks, the last restore and the expiry
// pass are kept alike in both stores.
func TestMarksOnBothStores(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, reopen func() storetest.Store) {
		h, err := store.OpenHorizon(st, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h.Of("s1", "k1", 0); ok {
			t.Fatal("a hub without backups has no horizon")
		}
		if err := h.Covered(store.Marks{"s1/k1": 7, "s1/k2@100": 103}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.LastRestore(st); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("last restore of a store never restored: %v", err)
		}
		r, err := store.OpenResync(st)
		if err != nil {
			t.Fatal(err)
		}
		if r.Needs("s1", "k1") {
			t.Fatal("a store never restored asks for a resync")
		}
		at := time.UnixMilli(time.Now().UnixMilli())
		if err := store.RecordExpiryPass(st, at); err != nil {
			t.Fatal(err)
		}
		st = reopen()
		if h, err = store.OpenHorizon(st, false); err != nil {
			t.Fatal(err)
		}
		if seq, ok := h.Of("s1", "k1", 0); !ok || seq != 7 {
			t.Fatalf("k1 after a reopen: %d, %v; want 7", seq, ok)
		}
		if seq, ok := h.Of("s1", "k2", 100); !ok || seq != 103 {
			t.Fatalf("k2 above 100 after a reopen: %d, %v; want 103", seq, ok)
		}
		if got, err := store.LastExpiryPass(st); err != nil || !got.Equal(at) {
			t.Fatalf("last expiry pass %v, %v; want %v", got, err, at)
		}
	})
}
