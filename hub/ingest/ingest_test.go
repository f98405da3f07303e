package ingest_test

import (
	"testing"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/test/poll"
	"linli/shared/test/storetest"
	"linli/shared/wire"
)

// An edge's plain downlink cursor report only moves its cursor: the
// changes after it are already on their way on the site topic, and sending
// them again on the device's own topic doubled the stream under load. A
// report that asks for a catch-up (the edge saw a gap) gets one.
func TestDownAckCatchesUpOnlyWhenAsked(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, st storetest.Store, _ func() storetest.Store) {
		testDownAckCatchesUpOnlyWhenAsked(t, st)
	})
}

func testDownAckCatchesUpOnlyWhenAsked(t *testing.T, st store.Backend) {
	tr := newTransport(true, nil)
	h := runIngestOn(t, tr, st, true, 1) // one decoder: messages handled in the order sent
	clock, down := h.clock, h.down

	const site, device = "s1", "k1"
	up, ack := wire.Topic(site, device, wire.LeafUp), wire.Topic(site, device, wire.LeafAck)
	own, all := wire.Topic(site, device, wire.LeafDown), wire.SiteDown(site)
	tr.deliverUp(t, up, wire.Up{Hello: &wire.Hello{Role: "kiosk", Clock: clock.Now()}})
	poll.WaitFor(t, "the hello's ack", func() bool { return tr.count(ack) == 1 })

	ev, err := event.NewEvent("", 1, clock.Now(), &event.Report{Category: "facilities", Title: "楼道灯不亮", Building: "B1", Unit: "1-502"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.NewBatch(1, 1, []event.Event{ev}, false, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tr.deliverUp(t, up, wire.Up{Batch: b})
	poll.WaitFor(t, "the report's change on the site topic", func() bool { return tr.count(all) > 0 })
	if down.Head(site) == 0 {
		t.Fatal("a report left the downlink log empty")
	}

	tr.deliverUp(t, up, wire.Up{DownAck: &wire.DownAck{Cursor: 0}})
	tr.deliverUp(t, up, wire.Up{DownAck: &wire.DownAck{Cursor: 0, CatchUp: true}})
	poll.WaitFor(t, "the asked-for catch-up", func() bool { return tr.count(own) > 0 })
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
