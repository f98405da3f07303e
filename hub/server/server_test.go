package server

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

func startHub(t *testing.T) *Hub {
	t.Helper()
	cfg := Config{Data: t.TempDir(), HTTP: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", ID: "hub",
		Profile: "small", LogLevel: "info", MaxGroup: 20000, AllowUnenrolled: true, TokenTTL: time.Hour, TLS: "auto"}
	h, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
	})
	waitSubscribed(t, h)
	return h
}

// waitSubscribed waits until h's ingest is subscribed. Ingest subscribes
// from its own goroutine; a fake edge publishes once and never resends (a
// real edge does), so a hello or batch sent before the subscription would
// be lost to the test. Every test that starts a hub and dials a fake edge
// waits here first.
func waitSubscribed(t *testing.T, h *Hub) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		return h.ingest.Subscribed(), "ingest not subscribed"
	})
}

// fakeEdge is a raw MQTT device that publishes hand-made batches.
type fakeEdge struct {
	t     *testing.T
	c     mqtt.Client
	site  string
	id    string
	acked atomic.Uint64
	acks  atomic.Int64
}

func dialEdge(t *testing.T, broker, site, id string) *fakeEdge {
	t.Helper()
	f := &fakeEdge{t: t, site: site, id: id}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(id).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(wire.Topic(site, id, wire.LeafAck), 1, func(_ mqtt.Client, m mqtt.Message) {
		payload, err := identity.Payload(m.Payload()) // signed by the hub
		if err != nil {
			t.Errorf("ack not signed: %v", err)
			return
		}
		a, err := wire.DecodeAck(payload)
		if err != nil {
			t.Errorf("bad ack: %v", err)
			return
		}
		f.acked.Store(a.Acked)
		f.acks.Add(1)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	f.c = c
	return f
}

func (f *fakeEdge) publish(up wire.Up) {
	f.t.Helper()
	payload, err := wire.Encode(up)
	if err != nil {
		f.t.Fatal(err)
	}
	tok := f.c.Publish(wire.Topic(f.site, f.id, wire.LeafUp), 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		f.t.Fatalf("publish: %v", tok.Error())
	}
}

func (f *fakeEdge) batch(from, to uint64, seqs ...uint64) wire.Up {
	f.t.Helper()
	if len(seqs) == 0 {
		for s := from; s <= to; s++ {
			seqs = append(seqs, s)
		}
	}
	var evs []event.Event
	for _, s := range seqs {
		ev, err := event.NewEvent("", s, hlc.Timestamp(1000+hlcOf(s)), &event.Report{Category: "noise", Title: fmt.Sprintf("r%d", s), Building: "B1"})
		if err != nil {
			f.t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	b, err := wire.NewBatch(from, to, evs, from%2 == 0, 5)
	if err != nil {
		f.t.Fatal(err)
	}
	return wire.Up{Batch: b}
}

func hlcOf(s uint64) uint64 { return s << 16 }

func (f *fakeEdge) waitAck(seq uint64, acksAtLeast int64) {
	f.t.Helper()
	poll.Eventually(f.t, 10*time.Second, func() (bool, string) {
		return f.acked.Load() == seq && f.acks.Load() >= acksAtLeast,
			fmt.Sprintf("acked %d after %d acks, want %d after %d", f.acked.Load(), f.acks.Load(), seq, acksAtLeast)
	})
}

func TestDuplicateAndReorderedBatchesChangeNothing(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	f := dialEdge(t, h.MQTTAddr(), "s1", "kiosk-x")
	f.publish(wire.Up{Hello: &wire.Hello{Role: "kiosk", LastSeq: 30}})
	f.waitAck(0, 1)

	// Out of order: the second batch first. The hub holds it but acks only
	// the contiguous prefix.
	f.publish(f.batch(11, 20))
	f.waitAck(0, 2)
	f.publish(f.batch(1, 10))
	f.waitAck(20, 3)
	// A batch with holes (dropped telemetry) covers its whole range.
	f.publish(f.batch(21, 30, 21, 25, 30))
	f.waitAck(30, 4)

	snapshot := func() ([]event.Event, uint64, uint64) {
		evs, err := h.store.Events("s1", "kiosk-x", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := h.Ingest().Device("kiosk-x")
		return evs, d.Acked, d.Received
	}
	before, acked, received := snapshot()
	if len(before) != 23 || acked != 30 || received != 23 {
		t.Fatalf("after first delivery: %d events, acked %d, received %d; want 23, 30, 23", len(before), acked, received)
	}
	// Everything again, reordered, regrouped and duplicated.
	f.publish(f.batch(21, 30, 21, 25, 30))
	f.publish(f.batch(5, 15))
	f.publish(f.batch(11, 20))
	f.publish(f.batch(1, 10))
	f.publish(f.batch(1, 10))
	// Several batches may share a commit and its single ack: wait for the
	// hub to have committed all eight.
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		st := h.Ingest().Stats()
		return st.Batches == 8, fmt.Sprintf("%d batches committed", st.Batches)
	})
	f.waitAck(30, 5)
	after, acked2, received2 := snapshot()
	if !reflect.DeepEqual(before, after) || acked2 != acked || received2 != received {
		t.Fatalf("replays changed the hub: %d events (acked %d, received %d) vs %d before", len(after), acked2, received2, len(before))
	}
	if st := h.Ingest().Stats(); st.Duplicates != 3+11+10+10+10 {
		t.Fatalf("duplicates counted %d, want 44", st.Duplicates)
	}
}

func TestBadMessagesAreRefusedNotStored(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	f := dialEdge(t, h.MQTTAddr(), "s1", "kiosk-y")
	tests := []struct {
		name    string
		payload []byte
	}{
		{"not cbor", []byte("hello")},
		{"empty up", mustEncode(t, wire.Up{})},
		{"bad range", mustEncode(t, wire.Up{Batch: &wire.Batch{From: 5, To: 1}})},
		{"foreign device in batch", mustEncode(t, wire.Up{Batch: &wire.Batch{From: 1, To: 1,
			Events: []event.Event{{Device: "other", Seq: 1, Kind: event.KindVote}}}})},
	}
	for _, tt := range tests {
		tok := f.c.Publish(wire.Topic("s1", "kiosk-y", wire.LeafUp), 1, false, tt.payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: publish: %v", tt.name, tok.Error())
		}
	}
	poll.Eventually(t, 5*time.Second, func() (bool, string) {
		st := h.Ingest().Stats()
		return st.Rejected == uint64(len(tests)), fmt.Sprintf("rejected %d of %d", st.Rejected, len(tests))
	})
	if evs, _ := h.store.Events("s1", "kiosk-y", 0, 10); len(evs) != 0 {
		t.Fatalf("stored %d events from bad messages", len(evs))
	}
	// A well-formed event with an invalid body is kept aside, not lost and
	// not merged, and its seq is acked so the edge moves on.
	bad, err := event.Marshal(&event.Rating{Resident: "R1", Target: "x", Score: 9})
	if err != nil {
		t.Fatal(err)
	}
	f.publish(wire.Up{Batch: &wire.Batch{From: 1, To: 1, Events: []event.Event{{Seq: 1, HLC: 7, Kind: event.KindRating, Body: bad}}}})
	f.waitAck(1, 1)
	if st := h.Ingest().Stats(); st.Quarantined != 1 {
		t.Fatalf("quarantined %d, want 1", st.Quarantined)
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := wire.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
