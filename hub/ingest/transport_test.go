package ingest_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"linli/hub/downlink"
	"linli/hub/ingest"
	"linli/hub/state"
	"linli/hub/store"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/wire"
)

// transport is an in-process broker for the ingest: the test hands it
// messages as an edge would publish them, and it passes each to the
// handler whose filter has the topic's leaf (up or status), as a broker
// does. What the hub publishes is kept by topic when published is set,
// and its acks are reported on acks when that is set (the newest kept).
type transport struct {
	mu        sync.Mutex
	handlers  map[string]func(topic string, payload []byte) // by filter's leaf
	published map[string][][]byte
	acks      chan wire.Ack
}

func newTransport(keep bool, acks chan wire.Ack) *transport {
	tr := &transport{handlers: map[string]func(string, []byte){}, acks: acks}
	if keep {
		tr.published = map[string][][]byte{}
	}
	return tr
}

func leaf(topic string) string { return topic[strings.LastIndexByte(topic, '/')+1:] }

func (tr *transport) Subscribe(filter string, h func(string, []byte)) error {
	tr.mu.Lock()
	tr.handlers[leaf(filter)] = h
	tr.mu.Unlock()
	return nil
}

func (tr *transport) Publish(topic string, payload []byte, _ bool) error {
	tr.mu.Lock()
	if tr.published != nil {
		tr.published[topic] = append(tr.published[topic], payload)
	}
	tr.mu.Unlock()
	if tr.acks == nil || leaf(topic) != wire.LeafAck {
		return nil
	}
	a, err := wire.DecodeAck(payload)
	if err != nil {
		return err
	}
	select {
	case tr.acks <- a:
	default:
		// Only the last one is waited for: it takes the place of one
		// not read yet, which a dropped last ack would leave waiting.
		select {
		case <-tr.acks:
		default:
		}
		select {
		case tr.acks <- a:
		default:
		}
	}
	return nil
}

func (tr *transport) count(topic string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.published[topic])
}

// deliver hands payload on topic to the handler subscribed to its leaf.
func (tr *transport) deliver(topic string, payload []byte) {
	tr.mu.Lock()
	h := tr.handlers[leaf(topic)]
	tr.mu.Unlock()
	h(topic, payload)
}

// deliverUp encodes and delivers an up message.
func (tr *transport) deliverUp(t testing.TB, topic string, up wire.Up) {
	t.Helper()
	payload, err := wire.Encode(up)
	if err != nil {
		t.Fatal(err)
	}
	tr.deliver(topic, payload)
}

// subscribed waits until the ingest has subscribed.
func (tr *transport) subscribed(t testing.TB) {
	t.Helper()
	poll.WaitFor(t, "the ingest to subscribe", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.handlers) > 0
	})
}

// hub is an ingest running over tr on a real Badger in a temp dir.
type hub struct {
	clock *hlc.Clock
	down  *downlink.Log // nil without the merged state
	in    *ingest.Ingest
	store store.Backend
}

// runIngest starts an ingest over tr, with the merged state and its
// downlink when merged is set, and with decoders decode workers (0: the
// default); it is stopped, and its error checked, when t ends. configure
// may change the options last.
func runIngest(t testing.TB, tr *transport, merged bool, decoders int, configure ...func(*ingest.Options, store.Backend)) hub {
	t.Helper()
	st, err := store.Open(t.TempDir(), kv.Server, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return runIngestOn(t, tr, st, merged, decoders, configure...)
}

// runIngestOn is runIngest on the store st (either implementation).
func runIngestOn(t testing.TB, tr *transport, st store.Backend, merged bool, decoders int, configure ...func(*ingest.Options, store.Backend)) hub {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	var err error
	h := hub{clock: hlc.NewClock(nil, 0)}
	opts := ingest.Options{Store: st, Transport: tr, Clock: h.clock, AllowUnsigned: true, Logger: log, Decoders: decoders}
	if merged {
		if h.down, err = downlink.Open(st, tr, h.clock, nil, log); err != nil {
			t.Fatal(err)
		}
		s, err := state.Open(state.Options{Store: st, Downlink: h.down, Clock: h.clock, HubID: "hub",
			Kiosks: func(string) []string { return nil }, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		opts.Applier, opts.Downlink = s, h.down
	}
	for _, f := range configure {
		f(&opts, st)
	}
	in, err := ingest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.in, h.store = in, st
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	tr.subscribed(t)
	return h
}
