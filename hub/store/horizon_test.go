package store

import (
	"slices"
	"testing"
)

func TestLoseRecordsTheHoleOnceAndMovesAcked(t *testing.T) {
	const b = 1 << 40 // a replacement's seq base
	for _, tc := range []struct {
		name      string
		base      uint64 // of the key that said hello
		acked     uint64
		above     []Range
		first     uint64
		wantLost  uint64
		wantAcked uint64
		wantGaps  []Range
		wantAbove []Range
	}{
		{"no hole: first is the next seq", 0, 10, nil, 11, 0, 10, nil, nil},
		{"no hole: first below acked", 0, 10, nil, 5, 0, 10, nil, nil},
		{"unknown (0)", 0, 10, nil, 0, 0, 10, nil, nil},
		{"hole", 0, 10, nil, 21, 10, 20, []Range{{11, 20}}, nil},
		{"hole around held ranges", 0, 10, []Range{{13, 14}, {30, 40}}, 21, 8, 20, []Range{{11, 12}, {15, 20}}, []Range{{30, 40}}},
		{"hole joins a held range", 0, 10, []Range{{21, 25}}, 21, 10, 25, []Range{{11, 20}}, nil},
		// A replacement numbers above its base: the hole is counted in its
		// own range, never across the seqs between its predecessor's and it.
		{"replacement, nothing sent yet", b, 10, nil, b + 1, 0, 10, nil, nil},
		{"replacement, first held past its acks", b, 10, []Range{{b + 1, b + 4}}, b + 5, 0, 10, nil, []Range{{b + 1, b + 4}}},
		{"replacement, hole from its base", b, 10, nil, b + 6, 5, 10, []Range{{b + 1, b + 5}}, []Range{{b + 1, b + 5}}},
		{"replacement, hole in its range", b, 10, []Range{{b + 1, b + 4}}, b + 9, 4, 10, []Range{{b + 5, b + 8}}, []Range{{b + 1, b + 8}}},
		{"replacement, hole around held", b, 10, []Range{{b + 1, b + 2}, {b + 5, b + 6}}, b + 9, 4, 10,
			[]Range{{b + 3, b + 4}, {b + 7, b + 8}}, []Range{{b + 1, b + 8}}},
		{"first device, a replacement's range above", 0, 10, []Range{{b + 1, b + 4}}, 21, 10, 20, []Range{{11, 20}}, []Range{{b + 1, b + 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DeviceRecord{Acked: tc.acked, Above: slices.Clone(tc.above)}
			if got := d.Lose(tc.base, tc.first); got != tc.wantLost {
				t.Fatalf("Lose(%d) = %d, want %d", tc.first, got, tc.wantLost)
			}
			if d.Lost != tc.wantLost || d.Acked != tc.wantAcked || !slices.Equal(d.Gaps, tc.wantGaps) {
				t.Fatalf("got lost %d acked %d gaps %v, want %d %d %v", d.Lost, d.Acked, d.Gaps, tc.wantLost, tc.wantAcked, tc.wantGaps)
			}
			if !slices.Equal(d.Above, tc.wantAbove) {
				t.Fatalf("held above acked %v, want %v", d.Above, tc.wantAbove)
			}
			if again := d.Lose(tc.base, tc.first); again != 0 || d.Lost != tc.wantLost {
				t.Fatalf("the same hello again recorded %d more (total %d): a hole is recorded once", again, d.Lost)
			}
		})
	}
}

// The horizon is absent on a hub without backups, 0 for devices no backup
// covered once backups are configured, moves with each completed backup,
// survives a restart (which also keeps "this hub takes backups"), and a
// restore sets it to what the restored store holds.
func TestHorizon(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	h, err := s.Horizon(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Of("s1", "k1", 0); ok {
		t.Fatal("a hub without backups has no horizon")
	}
	if h, err = s.Horizon(true); err != nil {
		t.Fatal(err)
	}
	if seq, ok := h.Of("s1", "k1", 0); !ok || seq != 0 {
		t.Fatalf("backups configured, none done: %d, %v; want 0, true", seq, ok)
	}
	if err := h.Covered(Marks{"s1/k1": 7, "s1/k2": 3}); err != nil {
		t.Fatal(err)
	}
	if seq, ok := h.Of("s1", "k1", 0); !ok || seq != 7 {
		t.Fatalf("after a backup: %d, %v; want 7", seq, ok)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if h, err = s.Horizon(false); err != nil {
		t.Fatal(err)
	}
	if seq, ok := h.Of("s1", "k2", 0); !ok || seq != 3 {
		t.Fatalf("after a restart (a backup was taken here): %d, %v; want 3, true", seq, ok)
	}
	b := s.NewBatch()
	b.PutDevice(&DeviceRecord{ID: "k1", Site: "s1", Acked: 5})
	b.PutDevice(&DeviceRecord{ID: "k3", Site: "s1", Acked: 9})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRestore(Restore{Hub: "hub"}); err != nil {
		t.Fatal(err)
	}
	if h, err = s.Horizon(false); err != nil {
		t.Fatal(err)
	}
	for dev, want := range map[string]uint64{"k1": 5, "k3": 9} {
		if seq, ok := h.Of("s1", dev, 0); !ok || seq != want {
			t.Errorf("after a restore %s: %d, %v; want %d (what the restored store holds)", dev, seq, ok, want)
		}
	}
}

// A device replaced under its id numbers above a seq base of its own: a
// backup covers each key's range as far as it was held, and the horizon
// of a range no backup reached is its base (keep everything above it).
func TestHorizonPerSeqBase(t *testing.T) {
	const b = 1 << 40
	s := openTest(t, t.TempDir())
	defer s.Close()
	batch := s.NewBatch()
	batch.PutDevice(&DeviceRecord{ID: "k1", Site: "s1", Acked: 8, Above: []Range{{b + 1, b + 4}, {b + 7, b + 9}}})
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	h, err := s.Horizon(true)
	if err != nil {
		t.Fatal(err)
	}
	marks, err := s.AckedMarks()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Covered(marks); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		base uint64
		want uint64
	}{
		{"first device", 0, 8},
		{"replacement: up to its first hole", b, b + 4},
		{"a later replacement, not covered", 2 * b, 2 * b},
	} {
		if seq, ok := h.Of("s1", "k1", tc.base); !ok || seq != tc.want {
			t.Errorf("%s: horizon %d, %v; want %d", tc.name, seq, ok, tc.want)
		}
	}
}
