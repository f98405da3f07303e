package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linli/hub/broker"
	"linli/hub/ingest"
	"linli/hub/pgstore"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// edge is a device's MQTT session on the embedded broker: it publishes
// batches to its up topic and keeps the acks it gets.
type edge struct {
	site, id string
	c        paho.Client
	mu       sync.Mutex
	acks     []uint64
}

func connectEdge(t *testing.T, addr, site, id string) *edge {
	t.Helper()
	e := &edge{site: site, id: id}
	e.c = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := e.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { e.c.Disconnect(100) })
	tok := e.c.Subscribe(wire.Topic(site, id, wire.LeafAck), 1, func(_ paho.Client, m paho.Message) {
		a, err := wire.DecodeAck(m.Payload())
		if err != nil {
			t.Errorf("%s: bad ack: %v", id, err)
			return
		}
		e.mu.Lock()
		e.acks = append(e.acks, a.Acked)
		e.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
	return e
}

// send publishes the batch of seqs from..to, as the edge's uplink does.
func (e *edge) send(t *testing.T, from, to uint64) {
	t.Helper()
	var evs []event.Event
	for seq := from; seq <= to; seq++ {
		evs = append(evs, newStored(t, "", seq).ev)
	}
	b, err := wire.NewBatch(from, to, evs, false, testClock.Now())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := wire.Encode(wire.Up{Batch: b})
	if err != nil {
		t.Fatal(err)
	}
	if tok := e.c.Publish(wire.Topic(e.site, e.id, wire.LeafUp), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func (e *edge) acked() []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]uint64(nil), e.acks...)
}

func (e *edge) waitAck(t *testing.T, want uint64) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, func() (bool, string) {
		a := e.acked()
		return len(a) > 0 && a[len(a)-1] == want, fmt.Sprintf("acks so far %v, want the last %d", a, want)
	})
}

// runLeased starts an ingest over b on pg whose sites come and go.
func runLeased(t *testing.T, b *broker.Broker, pg *pgstore.Store) *ingest.Ingest {
	t.Helper()
	in, err := ingest.New(ingest.Options{Store: ingest.PostgresStore{Store: pg}, Transport: b, Clock: testClock,
		AllowUnsigned: true, Leased: true, Decoders: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	poll.WaitFor(t, "the ingest to run", in.Subscribed)
	return in
}

// Two hub workers on one PostgreSQL and the embedded broker, a site
// moving between them as its lease would: a worker takes in and acks only
// the sites it owns, stops at once when it gives one up, and one that
// takes a site on reads its device records again, so an edge's events
// are stored and counted exactly once whoever holds the site.
func TestSitesComeAndGo(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	pg, err := pgstore.Open(context.Background(), testkit.StartPostgres(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	// The test sees each of k1's publishes pass the broker.
	var seen sync.WaitGroup
	if err := b.Subscribe(wire.Topic("s1", "k1", wire.LeafUp), func(string, []byte) { seen.Done() }); err != nil {
		t.Fatal(err)
	}
	send := func(e *edge, from, to uint64) {
		t.Helper()
		seen.Add(1)
		e.send(t, from, to)
		seen.Wait()
	}
	stored := func() []uint64 { return seqsOf(t, ingest.PostgresStore{Store: pg}, "s1", "k1", nil) }

	a, w2 := runLeased(t, b, pg), runLeased(t, b, pg)
	k1 := connectEdge(t, b.Addr(), "s1", "k1")

	// Nobody owns s1: nothing of it is taken in.
	send(k1, 1, 3)
	if got := len(stored()); got != 0 || len(k1.acked()) != 0 {
		t.Fatalf("unowned site: %d events stored, acks %v; want none", got, k1.acked())
	}

	if err := a.AddSite("s1"); err != nil {
		t.Fatal(err)
	}
	send(k1, 1, 3) // the edge resends after its ack timeout
	k1.waitAck(t, 3)

	// a gives s1 up: from then on nothing of it is stored or acked by a
	// (a is unsubscribed, so nothing even arrives).
	if err := a.RemoveSite("s1"); err != nil {
		t.Fatal(err)
	}
	before := a.Stats()
	send(k1, 4, 6)
	if got, n := stored(), len(k1.acked()); !reflect.DeepEqual(got, []uint64{1, 2, 3}) || n != 1 {
		t.Fatalf("after giving s1 up: stored %v, %d acks; want 1..3 and the one ack", got, n)
	}
	if after := a.Stats(); after.Messages != before.Messages || after.NotOwned != before.NotOwned {
		t.Fatalf("a got %d messages of a site it gave up (%d dropped), want none: it unsubscribed",
			after.Messages-before.Messages+after.NotOwned-before.NotOwned, after.NotOwned-before.NotOwned)
	}

	// w2 takes s1 on: it knows from the store what a acked.
	if err := w2.AddSite("s1"); err != nil {
		t.Fatal(err)
	}
	send(k1, 4, 6)
	k1.waitAck(t, 6)
	if s := w2.Stats(); s.Events != 3 {
		t.Fatalf("w2 stored %d new events, want 3 (4..6)", s.Events)
	}

	// And back to a, which must not trust what it remembered of k1
	// (acked 3): the resend of 4..6 is duplicates.
	if err := w2.RemoveSite("s1"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddSite("s1"); err != nil {
		t.Fatal(err)
	}
	before = a.Stats()
	send(k1, 4, 6)
	poll.WaitFor(t, "a to take the resend in", func() bool { return a.Stats().Duplicates-before.Duplicates == 3 })
	if s := a.Stats(); s.Events != before.Events {
		t.Fatalf("a counted %d of k1's events as new again", s.Events-before.Events)
	}
	k1.waitAck(t, 6)
	if got := stored(); !reflect.DeepEqual(got, seqRange(1, 6)) {
		t.Fatalf("stored %v, want 1..6 once each", got)
	}
	recs, err := pg.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Acked != 6 || recs[0].Received != 6 {
		t.Fatalf("device records %+v, want k1 acked 6 with 6 received", recs)
	}
}

// A message of a site given up that reaches the ingest anyway (it was on
// its way, or the transport cannot unsubscribe) is neither stored nor
// acked.
func TestNoAckForASiteGivenUp(t *testing.T) {
	tr := newTransport(true, nil)
	h := runIngest(t, tr, false, 1, func(o *ingest.Options, _ store.Backend) { o.Leased, o.Sites = true, []string{"s1"} })
	up, ack := wire.Topic("s1", "k1", wire.LeafUp), wire.Topic("s1", "k1", wire.LeafAck)
	batch := func(from, to uint64) wire.Up {
		var evs []event.Event
		for seq := from; seq <= to; seq++ {
			evs = append(evs, newStored(t, "", seq).ev)
		}
		b, err := wire.NewBatch(from, to, evs, false, testClock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return wire.Up{Batch: b}
	}
	tr.deliverUp(t, up, batch(1, 2))
	poll.WaitFor(t, "the ack of an owned site", func() bool { return tr.count(ack) == 1 })

	if err := h.in.RemoveSite("s1"); err != nil {
		t.Fatal(err)
	}
	tr.deliverUp(t, up, batch(3, 4))
	tr.deliverUp(t, up, wire.Up{Hello: &wire.Hello{LastSeq: 4}})
	if s := h.in.Stats(); s.NotOwned != 2 || s.Events != 2 {
		t.Fatalf("stats %+v, want 2 messages dropped as not owned and only the first 2 events", s)
	}
	if n := tr.count(ack); n != 1 {
		t.Fatalf("%d acks, want only the first", n)
	}
	if got := seqsOf(t, ingest.BadgerStore{Store: h.store.(*store.Store)}, "s1", "k1", nil); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("stored %v, want 1..2", got)
	}

	// A hub with fixed sites says so rather than pretending.
	fixed := runIngest(t, newTransport(false, nil), false, 1)
	if err := fixed.in.AddSite("s2"); !errors.Is(err, ingest.ErrStaticSites) {
		t.Fatalf("AddSite without Leased: %v, want ErrStaticSites", err)
	}
	if err := h.in.AddSite("bad site/"); err == nil {
		t.Fatal("AddSite of an invalid site id: no error")
	}
}
