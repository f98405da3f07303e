package bench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"linli/hub/downlink"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/merge"
)

// The start-up scenario's history lands in the store as ingest would have
// left it: every event once, device records that cover them, and the
// governance folded into the merged state a hub rebuilds at start.
func TestWriteHistory(t *testing.T) {
	n := 120_000
	if v := os.Getenv("LINLI_HISTORY_N"); v != "" { // a quick measure of the writer's rate
		n, _ = strconv.Atoi(v)
	}
	dir := filepath.Join(t.TempDir(), "store")
	log := slog.New(slog.DiscardHandler)
	st, err := writeHistory(context.Background(), dir, n, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events in %v (%.0f ev/s); %d reports, %d activities", st.events, st.took, float64(st.events)/st.took.Seconds(), st.reports, st.activities)
	if st.events != n || st.reports == 0 || st.activities == 0 {
		t.Fatalf("wrote %+v, want %d events with reports and activities", st, n)
	}

	s, err := store.Open(dir, kv.Server, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	devs, err := s.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var received uint64
	for _, d := range devs {
		if d.Acked != d.Received || len(d.Above) != 0 {
			t.Errorf("device %s: acked %d, received %d, above %v: want every seq held once", d.ID, d.Acked, d.Received, d.Above)
		}
		evs, err := s.Events(d.Site, d.ID, d.Acked-1, 10)
		if err != nil || len(evs) != 1 || evs[0].Seq != d.Acked {
			t.Errorf("device %s: last event %v, %v", d.ID, evs, err)
		}
		received += d.Received
	}
	if len(devs) != historyGateways+historyKiosks || received != uint64(n) {
		t.Errorf("%d devices holding %d events, want %d holding %d", len(devs), received, historyGateways+historyKiosks, n)
	}
	down, err := downlink.Open(s, discard{}, hlc.NewClock(nil, 0), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := state.Open(state.Options{Store: s, Downlink: down, Clock: hlc.NewClock(nil, 0), HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var reports, activities int
	ms.Read(func(m *merge.State) {
		reports, activities = len(m.Reports(benchSite)), len(m.Activities(benchSite))
	})
	if reports != st.reports || activities != st.activities {
		t.Errorf("merged state rebuilt with %d reports, %d activities; want %d, %d", reports, activities, st.reports, st.activities)
	}

	// Operators close reports and activities end in the history's time,
	// so a hold shorter than the history archives most of them; lists
	// still hold every one.
	var logs strings.Builder
	ms, err = state.Open(state.Options{Store: s, Downlink: down, Clock: hlc.NewClock(nil, 0), HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Hold: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "cold entities archived") {
		t.Errorf("the history left nothing cold for a hold of a day: %s", logs.String())
	}
	ms.Read(func(m *merge.State) {
		reports, activities = len(m.Reports(benchSite)), len(m.Activities(benchSite))
	})
	if reports != st.reports || activities != st.activities {
		t.Errorf("after archiving: %d reports, %d activities; want %d, %d", reports, activities, st.reports, st.activities)
	}
}

// The start-up scenario reads when the merged state was loaded, and the
// snapshot's size, from the hub's own log line.
func TestParseLoaded(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)
	tests := []struct {
		line      string
		after     time.Duration
		bytes     int64
		wantError bool
	}{
		{`time=2026-12-06T13:00:00.405Z level=INFO msg="merged state loaded" component=state facts=0 snapshot=true snapshot_bytes=31457280 fact_keys_read=0 took=241ms`,
			405 * time.Millisecond, 31457280, false},
		{`time=2026-12-06T13:00:01.5Z level=INFO msg="merged state loaded" component=state facts=12 snapshot=false snapshot_bytes=0 took=1s`,
			1500 * time.Millisecond, 0, false},
		{`level=INFO msg="merged state loaded" snapshot_bytes=1`, 0, 0, true},
		{`time=2026-12-06T13:00:01Z msg="merged state loaded" snapshot_bytes=x`, 0, 0, true},
	}
	for _, tc := range tests {
		after, n, err := parseLoaded(tc.line, t0)
		if (err != nil) != tc.wantError || after != tc.after || n != tc.bytes {
			t.Errorf("parseLoaded(%q) = %v, %d, %v; want %v, %d, error %v", tc.line, after, n, err, tc.after, tc.bytes, tc.wantError)
		}
	}
}
