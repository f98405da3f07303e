package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"linli/hub/downlink"
	"linli/hub/ingest"
	"linli/hub/pgstore"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// faultyBackend fails one commit of edge events, the failAt-th, once a
// group after it has been prepared (its device records put) before it
// ends: a failure in the middle of the pipeline. The failed batch is
// discarded, so nothing of it is stored.
type faultyBackend struct {
	store.Backend
	failAt int

	mu         sync.Mutex
	batches    int // batches made
	prepared   int // the latest batch made with events and device records
	poke       chan struct{}
	commits    int  // commits of batches with events
	overlapped bool // a later group was prepared before the failing commit ended
	failed     bool
}

func (f *faultyBackend) NewBatch() store.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	return &faultyBatch{Batch: f.Backend.NewBatch(), f: f, n: f.batches}
}

type faultyBatch struct {
	store.Batch
	f      *faultyBackend
	n      int // its place among the batches made
	events bool
}

func (b *faultyBatch) PutEvent(site string, ev *event.Event, encoded []byte) {
	b.events = true
	b.Batch.PutEvent(site, ev, encoded)
}

func (b *faultyBatch) PutDevice(d *store.DeviceRecord) {
	b.Batch.PutDevice(d)
	f := b.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if b.events && b.n > f.prepared {
		f.prepared = b.n
		select {
		case f.poke <- struct{}{}:
		default:
		}
	}
}

func (b *faultyBatch) Commit() error {
	f := b.f
	f.mu.Lock()
	if !b.events {
		f.mu.Unlock()
		return b.Batch.Commit()
	}
	f.commits++
	if f.commits != f.failAt {
		f.mu.Unlock()
		return b.Batch.Commit()
	}
	f.mu.Unlock()
	// Wait (bounded) for a later group to be prepared on top of this one.
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		f.overlapped = f.prepared > b.n
		done := f.overlapped
		f.mu.Unlock()
		if done {
			break
		}
		select {
		case <-f.poke:
			continue
		case <-deadline:
		}
		break
	}
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	b.Batch.Discard()
	return errors.New("injected commit failure")
}

// pipelineEvents are device's events: reports, and votes on the reports of
// the device before it, so that groups change entities earlier groups
// changed (the downlink's deltas build on them).
func pipelineEvents(t *testing.T, device, prev string, n int) []event.Event {
	t.Helper()
	var evs []event.Event
	for seq := 1; seq <= n; seq++ {
		var body event.Body = &event.Report{Category: "facilities", Title: fmt.Sprintf("灯 %s %d", device, seq), Building: "B1"}
		if seq%3 == 0 {
			body = &event.Vote{Report: event.FormatID(prev, uint64(seq-2)), Resident: fmt.Sprintf("R%d", seq)}
		}
		ev, err := event.NewEvent("", uint64(seq), testClock.Now(), body)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// A commit that fails while the group after it is already merged on top
// of it: that group is dropped too, nothing of either is acked, the
// edges' resends store every event once, and the merged state and the
// downlink the hub ends with are those a hub rebuilds from the store.
func TestPipelineCommitFailure(t *testing.T) {
	for _, be := range pipelineBackends {
		t.Run(be.name, func(t *testing.T) {
			inner := be.open(t)
			f := &faultyBackend{Backend: inner, failAt: 3, poke: make(chan struct{}, 1)}
			h, st, tr := runPipeline(t, f, nil)
			f.mu.Lock()
			overlapped, failed := f.overlapped, f.failed
			f.mu.Unlock()
			if !failed {
				t.Fatal("the injected failure never happened")
			}
			if !overlapped {
				t.Fatal("no group was prepared while the failing commit ran: the commits are not pipelined")
			}
			checkPipeline(t, inner, h, st, tr)
		})
	}
}

// slowCommitted feeds the ingest one batch at a time, from inside the
// Applier's Committed, and holds Committed until the ingest has prepared
// it: that group then builds on the group being committed, whose device
// records are not the live ones yet.
type slowCommitted struct {
	ingest.Pipeliner
	f    *faultyBackend
	next func() bool // delivers the next batch; false when all are sent
	// before, when set, runs at the start of the n-th Committed.
	before func(n int)
	mu     sync.Mutex
	n      int
	held   int // groups prepared while a Committed was held
}

func (s *slowCommitted) Committed() {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if s.before != nil {
		s.before(n)
	}
	f := s.f
	f.mu.Lock()
	from := f.prepared
	f.mu.Unlock()
	if s.next() {
		deadline := time.After(5 * time.Second)
	wait:
		for {
			f.mu.Lock()
			moved := f.prepared > from
			f.mu.Unlock()
			if moved {
				s.mu.Lock()
				s.held++
				s.mu.Unlock()
				break
			}
			select {
			case <-f.poke:
			case <-deadline:
				break wait
			}
		}
	}
	s.Pipeliner.Committed()
}

// A group prepared while the group before it is being committed builds
// on that group's device records, not on the live ones from before it:
// acks only move forward, and every event is acked and stored once.
func TestPipelineBuildsOnTheGroupCommitting(t *testing.T) {
	for _, be := range pipelineBackends {
		t.Run(be.name, func(t *testing.T) {
			inner := be.open(t)
			f := &faultyBackend{Backend: inner, poke: make(chan struct{}, 1)}
			var slow *slowCommitted
			h, st, tr := runPipeline(t, f, func(p ingest.Pipeliner, next func() bool) ingest.Applier {
				slow = &slowCommitted{Pipeliner: p, f: f, next: next}
				return slow
			})
			slow.mu.Lock()
			held := slow.held
			slow.mu.Unlock()
			if held < 10 {
				t.Fatalf("%d groups prepared while another's Committed ran, want every one fed there", held)
			}
			checkPipeline(t, inner, h, st, tr)
		})
	}
}

// A hello that arrives while a device's last group commits is in the
// device record the next group writes (the hello marks it to be written):
// the record in the store ends with the edge's last seq and pending count
// from the hello, though its received ranges come from the group in
// flight.
func TestPipelineKeepsPresenceFromHello(t *testing.T) {
	for _, be := range pipelineBackends {
		t.Run(be.name, func(t *testing.T) {
			inner := be.open(t)
			f := &faultyBackend{Backend: inner, poke: make(chan struct{}, 1)}
			var tr *transport
			runPipeline(t, f, func(p ingest.Pipeliner, next func() bool) ingest.Applier {
				return &slowCommitted{Pipeliner: p, f: f, next: next, before: func(n int) {
					// Group n is batch n, round robin: the next to last is
					// k2's last.
					if n == pipeDevices*pipePerDevice/10-1 {
						tr.deliverUp(t, wire.Topic(pipeSite, "k2", wire.LeafUp),
							wire.Up{Hello: &wire.Hello{Role: "kiosk", LastSeq: 999, Pending: 42, Clock: testClock.Now()}})
					}
				}}
			}, func(t0 *transport) { tr = t0 })
			recs, err := inner.Devices()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range recs {
				if d.ID == "k2" && (d.LastSeq != 999 || d.Pending != 42) {
					t.Fatalf("k2 stored with last seq %d, pending %d; the hello said 999, 42", d.LastSeq, d.Pending)
				}
			}
		})
	}
}

var pipelineBackends = []struct {
	name string
	open func(t *testing.T) store.Backend
}{
	{"badger", func(t *testing.T) store.Backend {
		st, err := store.Open(t.TempDir(), kv.Server, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
	{"postgres", func(t *testing.T) store.Backend {
		st, err := pgstore.Open(context.Background(), testkit.StartPostgres(t), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

const pipeSite, pipeDevices, pipePerDevice = "s1", 4, 120

// runPipeline runs an ingest with the merged state on f, sends four
// devices' events in many small groups, and resends what is not acked
// until all is. With wrap, the Applier is wrap's, and the batches are
// sent only as it calls next, one at a time.
func runPipeline(t *testing.T, f *faultyBackend, wrap func(p ingest.Pipeliner, next func() bool) ingest.Applier, seeTransport ...func(*transport)) (hub, *state.State, *transport) {
	t.Helper()
	tr := newTransport(true, nil)
	for _, see := range seeTransport {
		see(tr)
	}
	var st *state.State
	var queue []func()
	var qmu sync.Mutex
	next := func() bool {
		qmu.Lock()
		defer qmu.Unlock()
		if len(queue) == 0 {
			return false
		}
		queue[0]()
		queue = queue[1:]
		return true
	}
	h := runIngestOn(t, tr, f, true, 1, func(o *ingest.Options, _ store.Backend) {
		st = o.Applier.(*state.State)
		o.MaxGroup = 40 // many groups
		if wrap != nil {
			o.Applier = wrap(st, next)
		}
	})

	const site, devices, perDevice, per = pipeSite, pipeDevices, pipePerDevice, 10
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%d", i)
	}
	batches := map[string][]wire.Up{}
	for i, id := range ids {
		evs := pipelineEvents(t, id, ids[(i+devices-1)%devices], perDevice)
		for from := 0; from < perDevice; from += per {
			part := evs[from : from+per]
			b, err := wire.NewBatch(part[0].Seq, part[len(part)-1].Seq, part, false, testClock.Now())
			if err != nil {
				t.Fatal(err)
			}
			batches[id] = append(batches[id], wire.Up{Batch: b})
		}
	}
	// The edges send everything, round by round, then resend what
	// is not acked until all is.
	for r := range perDevice / per {
		for _, id := range ids {
			up := batches[id][r]
			send := func() { tr.deliverUp(t, wire.Topic(site, id, wire.LeafUp), up) }
			if wrap == nil {
				send()
				continue
			}
			qmu.Lock()
			queue = append(queue, send)
			qmu.Unlock()
		}
	}
	next()
	acked := func(id string) uint64 {
		d, _ := h.in.Device(id)
		return d.AckedFrom(0)
	}
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		qmu.Lock()
		feeding := len(queue) > 0
		qmu.Unlock()
		if feeding {
			return false, "every batch fed"
		}
		all := true
		for _, id := range ids {
			a := acked(id)
			if a >= perDevice {
				continue
			}
			all = false
			for _, up := range batches[id] {
				if up.Batch.To > a {
					tr.deliverUp(t, wire.Topic(site, id, wire.LeafUp), up)
				}
			}
		}
		return all, "every event acked"
	})
	return h, st, tr
}

// checkPipeline checks that every event is stored once and acked, that
// acks only moved forward, and that the merged state and the downlink
// equal a rebuild from the store.
func checkPipeline(t *testing.T, inner store.Backend, h hub, st *state.State, tr *transport) {
	t.Helper()
	const site, devices, perDevice = pipeSite, pipeDevices, pipePerDevice
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%d", i)
	}
	// Every event stored once, every ack within what is stored.
	recs, err := inner.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range recs {
		evs, err := inner.Events(site, d.ID, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, ev := range evs {
			seqs = append(seqs, ev.Seq)
		}
		if !reflect.DeepEqual(seqs, seqRange(1, perDevice)) {
			t.Fatalf("%s: stored seqs %v, want 1..%d once each", d.ID, seqs, perDevice)
		}
		if d.Received != perDevice || d.AckedFrom(0) != perDevice {
			t.Fatalf("%s: record received %d acked %d, want %d", d.ID, d.Received, d.AckedFrom(0), perDevice)
		}
	}
	if len(recs) != devices {
		t.Fatalf("%d device records stored, want %d", len(recs), devices)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, id := range ids {
		var last uint64
		for _, payload := range tr.published[wire.Topic(site, id, wire.LeafAck)] {
			a, err := wire.DecodeAck(payload)
			if err != nil {
				t.Fatal(err)
			}
			if a.Acked > perDevice {
				t.Fatalf("%s acked %d, beyond what it sent", id, a.Acked)
			}
			if a.Acked < last {
				t.Fatalf("%s acked %d after %d: an ack went back", id, a.Acked, last)
			}
			last = a.Acked
		}
	}

	// The merged state and the downlink equal a rebuild from the store.
	log := slog.New(slog.DiscardHandler)
	down, err := downlink.Open(inner, tr, h.clock, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := state.Open(state.Options{Store: inner, Downlink: down, Clock: h.clock, HubID: "hub",
		Kiosks: func(string) []string { return nil }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reportsOf(t, st, site), reportsOf(t, rebuilt, site); got != want {
		t.Fatalf("merged state differs from its rebuild from the store:\n got %s\nwant %s", got, want)
	}
	if got, want := h.down.Head(site), down.Head(site); got != want {
		t.Fatalf("downlink head %d, the store's log %d", got, want)
	}
}

// reportsOf is site's reports as JSON, with their votes.
func reportsOf(t *testing.T, st *state.State, site string) string {
	t.Helper()
	var out []byte
	st.Read(func(m *merge.State) {
		var err error
		if out, err = json.Marshal(m.Reports(site)); err != nil {
			t.Fatal(err)
		}
	})
	return string(out)
}
