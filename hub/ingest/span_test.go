package ingest

import (
	"testing"

	"linli/hub/store"
)

func rng(from, to uint64) store.Range { return store.Range{From: from, To: to} }

// Each key of a replaced device is acked from its own seq base.
func TestAckedFrom(t *testing.T) {
	const base = 1 << 40
	for _, tc := range []struct {
		name  string
		rec   store.DeviceRecord
		base  uint64
		wantA uint64
	}{
		{"first device", store.DeviceRecord{Acked: 8, Above: []store.Range{rng(base+1, base+4)}}, 0, 8},
		{"replacement", store.DeviceRecord{Acked: 8, Above: []store.Range{rng(base+1, base+4)}}, base, base + 4},
		{"replacement, nothing yet", store.DeviceRecord{Acked: 8}, base, base},
		{"replacement with a hole", store.DeviceRecord{Acked: 3, Above: []store.Range{rng(base+1, base+2), rng(base+5, base+6)}}, base, base + 2},
		{"replacement, first seq missing", store.DeviceRecord{Above: []store.Range{rng(base+2, base+6)}}, base, base},
	} {
		if got := ackedFrom(&tc.rec, tc.base); got != tc.wantA {
			t.Errorf("%s: acked %d, want %d", tc.name, got, tc.wantA)
		}
	}
}
