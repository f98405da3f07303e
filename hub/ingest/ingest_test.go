package ingest_test

import (
	"context"
	"log/slog"
	"testing"

	"linli/hub/downlink"
	"linli/hub/ingest"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/wire"
)

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
	tr := newTransport(true, nil)
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
	tr.subscribed(t)

	const site, device = "s1", "k1"
	up, ack := wire.Topic(site, device, wire.LeafUp), wire.Topic(site, device, wire.LeafAck)
	own, all := wire.Topic(site, device, wire.LeafDown), wire.SiteDown(site)
	tr.deliverUp(t, up, wire.Up{Hello: &wire.Hello{Role: "kiosk", Clock: clock.Now()}})
	waitFor(t, "the hello's ack", func() bool { return tr.count(ack) == 1 })

	ev, err := event.NewEvent("", 1, clock.Now(), &event.Report{Category: "facilities", Title: "楼道灯不亮", Building: "B1", Unit: "1-502"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.NewBatch(1, 1, []event.Event{ev}, false, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tr.deliverUp(t, up, wire.Up{Batch: b})
	waitFor(t, "the report's change on the site topic", func() bool { return tr.count(all) > 0 })
	if down.Head(site) == 0 {
		t.Fatal("a report left the downlink log empty")
	}

	tr.deliverUp(t, up, wire.Up{DownAck: &wire.DownAck{Cursor: 0}})
	tr.deliverUp(t, up, wire.Up{DownAck: &wire.DownAck{Cursor: 0, CatchUp: true}})
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
