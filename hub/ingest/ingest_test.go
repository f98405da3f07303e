package ingest_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/hub/downlink"
	"linli/hub/ingest"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/wire"
)

// recorder is an in-process transport that keeps what the hub publishes,
// by topic.
type recorder struct {
	mu        sync.Mutex
	handlers  map[string]func(topic string, payload []byte) // by filter's leaf
	published map[string][][]byte
}

func (r *recorder) Subscribe(filter string, h func(string, []byte)) error {
	r.mu.Lock()
	r.handlers[filter[strings.LastIndexByte(filter, '/')+1:]] = h
	r.mu.Unlock()
	return nil
}

func (r *recorder) Publish(topic string, payload []byte, _ bool) error {
	r.mu.Lock()
	r.published[topic] = append(r.published[topic], payload)
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.published[topic])
}

func (r *recorder) deliver(t *testing.T, topic string, up wire.Up) {
	t.Helper()
	payload, err := wire.Encode(up)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	h := r.handlers[topic[strings.LastIndexByte(topic, '/')+1:]]
	r.mu.Unlock()
	h(topic, payload)
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// An edge's plain downlink cursor report only moves its cursor: the
// changes after it are already on their way on the site topic, and sending
// them again on the device's own topic doubled the stream under load. A
// report that asks for a catch-up (the edge saw a gap) gets one.
func TestDownAckCatchesUpOnlyWhenAsked(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(t.TempDir(), kv.Server, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tr := &recorder{handlers: map[string]func(string, []byte){}, published: map[string][][]byte{}}
	clock := hlc.NewClock(nil, 0)
	down, err := downlink.Open(st.DB(), tr, clock, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.Open(state.Options{Store: st, Downlink: down, Clock: clock, HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ingest.Options{Store: st, Transport: tr, Clock: clock, AllowUnsigned: true, Logger: log,
		Applier: s, Downlink: down, Decoders: 1}) // one decoder: messages handled in the order sent
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "the ingest to subscribe", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.handlers) > 0
	})

	const site, device = "s1", "k1"
	up, ack := wire.Topic(site, device, wire.LeafUp), wire.Topic(site, device, wire.LeafAck)
	own, all := wire.Topic(site, device, wire.LeafDown), wire.SiteDown(site)
	tr.deliver(t, up, wire.Up{Hello: &wire.Hello{Role: "kiosk", Clock: clock.Now()}})
	waitFor(t, "the hello's ack", func() bool { return tr.count(ack) == 1 })

	ev, err := event.NewEvent("", 1, clock.Now(), &event.Report{Category: "facilities", Title: "楼道灯不亮", Building: "B1", Unit: "1-502"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.NewBatch(1, 1, []event.Event{ev}, false, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tr.deliver(t, up, wire.Up{Batch: b})
	waitFor(t, "the report's change on the site topic", func() bool { return tr.count(all) > 0 })
	if down.Head(site) == 0 {
		t.Fatal("a report left the downlink log empty")
	}

	tr.deliver(t, up, wire.Up{DownAck: &wire.DownAck{Cursor: 0}})
	tr.deliver(t, up, wire.Up{DownAck: &wire.DownAck{Cursor: 0, CatchUp: true}})
	waitFor(t, "the asked-for catch-up", func() bool { return tr.count(own) > 0 })
	// With one decoder the plain report was handled before the asked one:
	// exactly one catch-up went out.
	if n := tr.count(own); n != 1 {
		t.Fatalf("%d messages on %s, want the one catch-up that was asked for", n, own)
	}
	d, err := wire.DecodeDown(tr.published[own][0])
	if err != nil {
		t.Fatal(err)
	}
	if d.Prev != 0 || d.Last != down.Head(site) || len(d.Changes) == 0 {
		t.Fatalf("catch-up (%d, %d] with %d changes, want (0, %d]", d.Prev, d.Last, len(d.Changes), down.Head(site))
	}
}
