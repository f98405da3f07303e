package ingest_test

import (
	"strings"
	"sync"
	"testing"
	"time"

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
	default: // only the last one is waited for
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
	waitFor(t, "the ingest to subscribe", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.handlers) > 0
	})
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
