package store

import (
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

func putEvents(t *testing.T, b Batch, site, device string, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		ev, err := event.NewEvent(device, seq, hlc.FromTime(time.Unix(int64(1_700_000_000+seq), 0)),
			&event.Checkin{Resident: "R1", Activity: "A1"})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		b.PutEvent(site, &ev, enc)
	}
}

func seqsOf(evs []event.Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

// Events pages through one device's events in seq order, never into a
// device whose id starts with the same letters; device records and events
// are on disk once the batch commits, and a discarded batch leaves nothing.
func TestEventsDevicesAndBatches(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	s, err := Open(dir, kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	putEvents(t, b, "s1", "k1", 1, 10)
	putEvents(t, b, "s1", "k10", 1, 3)
	putEvents(t, b, "s2", "k1", 1, 2)
	b.PutDevice(&DeviceRecord{ID: "k1", Site: "s1", Acked: 10, Received: 10})
	b.PutDevice(&DeviceRecord{ID: "k10", Site: "s1", Acked: 3, Received: 3})
	// A device's consecutive events are written as one run: the first two
	// devices' runs and both device records are written, the last run is
	// written at commit.
	if b.Len() != 4 {
		t.Errorf("batch of %d writes before commit, want 4", b.Len())
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	lost := s.NewBatch()
	putEvents(t, lost, "s1", "k1", 11, 12)
	lost.PutDevice(&DeviceRecord{ID: "k1", Site: "s1", Acked: 12})
	lost.Discard()

	// Reopened: what was committed is on disk.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, kv.Small, log); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		site, device string
		after        uint64
		limit        int
		want         []uint64
	}{
		{"s1", "k1", 0, 4, []uint64{1, 2, 3, 4}},
		{"s1", "k1", 4, 100, []uint64{5, 6, 7, 8, 9, 10}},
		{"s1", "k1", 10, 100, nil},
		{"s1", "k10", 0, 100, []uint64{1, 2, 3}},
		{"s2", "k1", 1, 100, []uint64{2}},
		{"s1", "k2", 0, 100, nil},
	} {
		evs, err := s.Events(tc.site, tc.device, tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqsOf(evs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Events(%s, %s, after %d, limit %d) = %v, want %v", tc.site, tc.device, tc.after, tc.limit, got, tc.want)
		}
		for _, ev := range evs {
			if ev.Device != tc.device || ev.Kind != event.KindCheckin {
				t.Errorf("event %d read back as device %q kind %q", ev.Seq, ev.Device, ev.Kind)
			}
		}
	}
	ds, err := s.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != "k1" || ds[0].Acked != 10 || ds[1].ID != "k10" {
		t.Errorf("devices %+v; want k1 acked 10 (the discarded batch's 12 not stored) and k10", ds)
	}

	// The event reader finds events in and out of key order and says
	// ErrNotFound for one never stored.
	err = s.DB().View(func(txn *badger.Txn) error {
		r := NewEventReader(txn)
		defer r.Close()
		for _, want := range []struct {
			device string
			seq    uint64
		}{{"k1", 2}, {"k1", 3}, {"k1", 9}, {"k10", 1}, {"k1", 1}} {
			ev, err := r.Event("s1", want.device, want.seq)
			if err != nil || ev.Seq != want.seq || ev.Device != want.device {
				t.Errorf("Event(%s, %d) = %d/%s, %v", want.device, want.seq, ev.Seq, ev.Device, err)
			}
		}
		if _, err := r.Event("s1", "k1", 11); !errors.Is(err, ErrNotFound) {
			t.Errorf("Event of a discarded write: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Cover joins held ranges and moves Acked over every range that reaches
// it; Holds and AckedFrom read what it left.
func TestCoverHoldsAndAckedFrom(t *testing.T) {
	for _, tc := range []struct {
		name   string
		covers [][2]uint64
		acked  uint64
		above  []Range
	}{
		{"in order", [][2]uint64{{1, 5}, {6, 9}}, 9, nil},
		{"a hole", [][2]uint64{{1, 5}, {8, 9}}, 5, []Range{{8, 9}}},
		{"the hole filled", [][2]uint64{{1, 5}, {8, 9}, {6, 7}}, 9, nil},
		{"out of order ranges join", [][2]uint64{{20, 25}, {10, 12}, {13, 19}}, 0, []Range{{10, 25}}},
		{"overlaps", [][2]uint64{{1, 5}, {3, 8}, {2, 4}}, 8, nil},
		{"below acked changes nothing", [][2]uint64{{1, 9}, {2, 3}}, 9, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d DeviceRecord
			for _, c := range tc.covers {
				d.Cover(c[0], c[1])
			}
			if d.Acked != tc.acked || !reflect.DeepEqual(d.Above, tc.above) {
				t.Fatalf("acked %d above %v, want %d %v", d.Acked, d.Above, tc.acked, tc.above)
			}
			held := map[uint64]bool{}
			for _, c := range tc.covers {
				for s := c[0]; s <= c[1]; s++ {
					held[s] = true
				}
			}
			for seq := uint64(1); seq <= 30; seq++ {
				if d.Holds(seq) != held[seq] {
					t.Errorf("Holds(%d) = %v, want %v", seq, d.Holds(seq), held[seq])
				}
			}
		})
	}
	// A replacement numbers above its base: its mark is its own.
	base := uint64(1) << 40
	d := DeviceRecord{Acked: 100}
	d.Cover(base+1, base+7)
	d.Cover(base+9, base+9)
	if got := d.AckedFrom(0); got != 100 {
		t.Errorf("AckedFrom(0) = %d, want 100", got)
	}
	if got := d.AckedFrom(base); got != base+7 {
		t.Errorf("AckedFrom(base) = base+%d, want base+7", got-base)
	}
}
