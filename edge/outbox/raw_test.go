package outbox

import (
	"bytes"
	"context"
	"testing"

	"linli/shared/event"
)

// ReadRaw hands out exactly the encodings of what Read decodes, bounded the
// same way, and never a ghost of a failed commit.
func TestReadRawMatchesRead(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	for i := 1; i <= 20; i++ {
		appendAll(t, l, checkin(i))
	}
	putGhost(t, l, 21)
	tests := []struct {
		after              uint64
		maxEvents, maxByte int
		want               int
	}{
		{0, 100, 1 << 20, 20}, // all, and not the ghost at 21
		{0, 7, 1 << 20, 7},
		{5, 100, 1 << 20, 15},
		{0, 100, 1, 1}, // at least one
		{20, 100, 1 << 20, 0},
	}
	for _, tt := range tests {
		evs, err := l.Read(tt.after, tt.maxEvents, tt.maxByte)
		if err != nil {
			t.Fatal(err)
		}
		raw, n, last, err := l.ReadRaw(tt.after, tt.maxEvents, tt.maxByte, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if n != tt.want || len(evs) != tt.want {
			t.Fatalf("ReadRaw(%d, %d, %d) = %d events, Read %d; want %d", tt.after, tt.maxEvents, tt.maxByte, n, len(evs), tt.want)
		}
		var want []byte
		for i := range evs {
			ev := evs[i]
			ev.Device = ""
			data, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, data...)
		}
		if !bytes.Equal(raw, append([]byte("x"), want...)) {
			t.Fatalf("ReadRaw(%d, …) bytes differ from the re-encoded events of Read", tt.after)
		}
		if n > 0 && last != evs[n-1].Seq {
			t.Fatalf("ReadRaw last = %d, want %d", last, evs[n-1].Seq)
		}
	}
	// Stored encodings decode as the events they are.
	raw, n, _, err := l.ReadRaw(0, 3, 1<<20, nil)
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	var evs []event.Event
	if err := event.Unmarshal(append([]byte{0x83}, raw...), &evs); err != nil || evs[2].Seq != 3 {
		t.Fatalf("decode %d stored encodings: %+v %v", n, evs, err)
	}
}

// Acks forward skip counting keys while no telemetry was dropped above the
// cursor, and count them when some was: pending stays exact either way.
func TestAckPendingAroundDroppedTelemetry(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	for i := 1; i <= 10; i++ {
		appendAll(t, l, reading(i), checkin(i)) // odd seqs readings, even check-ins
	}
	ack := func(seq, wantPending uint64) {
		t.Helper()
		if err := l.Ack(seq, false); err != nil {
			t.Fatal(err)
		}
		if st := l.Stats(); st.Pending != wantPending || st.AckedSeq != seq {
			t.Fatalf("after Ack(%d): %+v, want pending %d", seq, st, wantPending)
		}
	}
	ack(4, 16) // no holes: the span is discounted
	ev, gap, err := l.DropTelemetry(context.Background(), 3, "test")
	if err != nil {
		t.Fatal(err)
	}
	// 5, 7 and 9 dropped; the gap event is seq 21.
	if gap.FirstSeq != 5 || gap.LastSeq != 9 || ev.Seq != 21 {
		t.Fatalf("dropped %+v as seq %d", gap, ev.Seq)
	}
	if st := l.Stats(); st.Pending != 14 {
		t.Fatalf("after the drop: %+v, want 14 pending", st)
	}
	ack(10, 11) // only 6, 8 and 10 are stored in (4, 10]: the holes are counted
	ack(21, 0)
	appendAll(t, l, checkin(99))
	ack(22, 0) // solid again once everything is acked
}
