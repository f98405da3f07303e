package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// expiredMetric reads linli_hub_events_expired_total of a kind.
func expiredMetric(t *testing.T, base, kind string) float64 {
	t.Helper()
	resp, out := send(t, "GET", base+"/metrics", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	m := regexp.MustCompile(`(?m)^linli_hub_events_expired_total\{kind="` + kind + `"\} (\S+)$`).FindStringSubmatch(string(out))
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Raw readings and door decisions older than their retention are deleted
// by the hub's retention loop, and nothing else: recent ones, other kinds,
// and the forced door the merged state rebuilds its alarm from stay. The
// hub still starts with its merged state whole, the device's acked mark
// does not move back, and an edge resending the deleted events gets them
// acked as duplicates without their being stored again.
func TestRetentionDeletesOnlyExpiredReadingsAndAccess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	day := 24 * time.Hour
	ago := func(d time.Duration) hlc.Timestamp { return hlc.FromTime(now.Add(-d)) }
	type row struct {
		at   hlc.Timestamp
		body event.Body
		kept bool
	}
	rows := []row{
		{ago(200 * day), &event.Reading{Sensor: "T1", Type: "temperature", Value: 20}, false},
		{ago(10 * day), &event.Reading{Sensor: "T1", Type: "temperature", Value: 21}, true},
		{ago(400 * day), &event.Access{Door: "B1-main", Result: "granted", Credential: "h:aa"}, false},
		{ago(200 * day), &event.Access{Door: "B1-main", Result: "granted", Credential: "h:ab"}, true},
		{ago(400 * day), &event.Access{Door: "B1-main", Result: "forced", Building: "B1"}, true},
		{ago(500 * day), &event.Access{Door: "B1-back", Result: "held_open", Building: "B1"}, true},
		{ago(1000 * day), &event.Alarm{Sensor: "S1", Type: "smoke", Active: true, Building: "B1"}, true},
		{ago(100 * day), &event.Reading{Sensor: "H1", Type: "humidity", Value: 50}, false},
		{ago(91 * day), &event.Access{Door: "B1-main", Result: "denied", Reason: "not_listed"}, true},
	}
	var evs []event.Event
	for i, r := range rows {
		ev, err := event.NewEvent("", uint64(i+1), r.at, r.body)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	last := uint64(len(evs))
	up := func() wire.Up {
		b, err := wire.NewBatch(1, last, evs, false, hlc.FromTime(now))
		if err != nil {
			t.Fatal(err)
		}
		return wire.Up{Batch: b}
	}
	start := func() *Hub {
		t.Helper()
		cfg := hubConfig(dir)
		cfg.KeepReadings, cfg.KeepAccess, cfg.RetentionEvery = DefaultKeepReadings, DefaultKeepAccess, time.Hour
		h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		waitSubscribed(t, h)
		return h
	}
	alarms := func(h *Hub) int {
		n := 0
		h.state.Read(func(m *merge.State) {
			n = len(m.AlarmHistory(func(merge.AlarmView, []merge.AlarmTransition) bool { return true }))
		})
		return n
	}
	stored := func(h *Hub) []uint64 {
		got, err := h.store.Events("s1", "gw-1", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, ev := range got {
			seqs = append(seqs, ev.Seq)
		}
		return seqs
	}
	var want []uint64
	for i, r := range rows {
		if r.kept {
			want = append(want, uint64(i+1))
		}
	}

	// The events arrive; the first pass ran at start, before them.
	h := start()
	f := dialEdge(t, h.MQTTAddr(), "s1", "gw-1")
	f.publish(wire.Up{Hello: &wire.Hello{Role: "gateway", LastSeq: last}})
	f.waitAck(0, 1)
	f.publish(up())
	f.waitAck(last, 2)
	if got := stored(h); len(got) != len(rows) {
		t.Fatalf("stored seqs %v, want all %d", got, len(rows))
	}
	alarmsBefore := alarms(h)
	if alarmsBefore != 3 {
		t.Fatalf("%d alarms, want the forced door, the held-open door and the smoke", alarmsBefore)
	}
	f.c.Disconnect(100)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// A start within the hour of the last pass does not pass again: the
	// expired events are still there.
	h = start()
	if got := stored(h); len(got) != len(rows) {
		t.Fatalf("a start before the next pass was due: stored seqs %v, want all %d", got, len(rows))
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// Once the pass is due (its last an hour ago), the start passes at
	// once and deletes the expired ones.
	st, err := store.Open(filepath.Join(dir, "store"), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RecordExpiryPass(time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	h = start()
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		got := stored(h)
		return slices.Equal(got, want), fmt.Sprintf("stored seqs %v, want %v", got, want)
	})
	base := h.HTTPURL()
	// The pass counts what it deleted once it is through.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		r, a := expiredMetric(t, base, "reading"), expiredMetric(t, base, "access")
		return r == 2 && a == 1, fmt.Sprintf("expired metric: reading %v, access %v; want 2 and 1", r, a)
	})
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// Once more: the merged state rebuilds without the deleted events,
	// the device's marks stand, and a resend stores nothing again.
	h = start()
	if n := alarms(h); n != alarmsBefore {
		t.Fatalf("%d alarms after restart, want %d", n, alarmsBefore)
	}
	d, ok := h.Ingest().Device("gw-1")
	if !ok || d.Acked != last || d.Received != last {
		t.Fatalf("device record %+v, want acked and received %d", d, last)
	}
	f = dialEdge(t, h.MQTTAddr(), "s1", "gw-1")
	f.publish(wire.Up{Hello: &wire.Hello{Role: "gateway", LastSeq: last}})
	f.waitAck(last, 1)
	f.publish(up())
	f.waitAck(last, 2)
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		st := h.Ingest().Stats()
		return st.Duplicates == last, fmt.Sprintf("%d duplicates, want %d", st.Duplicates, last)
	})
	if got := stored(h); !slices.Equal(got, want) {
		t.Fatalf("after the resend stored seqs %v, want %v", got, want)
	}
	f.c.Disconnect(100) // before the broker goes, or paho reconnects
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}
