package brokerclient

import (
	"bytes"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// copyingStore is paho's memory store holding copies of the packets put
// in it. On a reconnect paho resends what its store holds and marks each
// publish as a duplicate first; with the memory store that is the very
// packet its sender may still be writing from before the reconnect, a
// data race inside paho (the race detector caught it in the reconnect
// test of this package, and paho's own issue tracker knows it). A copy
// is marked instead; at worst the broker gets a publish twice, which QoS
// 1 allows and the hub's acks and downlink take as they come.
type copyingStore struct{ mqtt.Store }

func newCopyingStore() *copyingStore { return &copyingStore{mqtt.NewMemoryStore()} }

// Put stores a copy of m, or nothing when m cannot be copied (paho then
// does not resend it after a reconnect: the edges resend what was not
// acked, and a downlink gap is caught up).
func (s *copyingStore) Put(key string, m packets.ControlPacket) {
	var buf bytes.Buffer
	if err := m.Write(&buf); err != nil {
		return
	}
	cp, err := packets.ReadPacket(&buf)
	if err != nil {
		return
	}
	s.Store.Put(key, cp)
}
