package brokerclient

import (
	"bytes"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// What paho resends after a reconnect, and marks as a duplicate first, is
// a copy: the packet handed to the store may still be on its way out of
// the session before, and marking it in place raced with its sender.
func TestStoreHoldsCopies(t *testing.T) {
	s := newCopyingStore()
	s.Open()
	defer s.Close()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.TopicName, pub.MessageID, pub.Payload = 1, "linli/v1/s1/kiosk-1/down", 7, []byte("ack")
	s.Put("o.7", pub)
	got, ok := s.Get("o.7").(*packets.PublishPacket)
	if !ok {
		t.Fatalf("stored %T, want a publish", s.Get("o.7"))
	}
	if got == pub {
		t.Fatal("the store holds the packet it was given, not a copy")
	}
	if got.TopicName != pub.TopicName || got.MessageID != 7 || got.Qos != 1 || !bytes.Equal(got.Payload, pub.Payload) {
		t.Fatalf("copy %+v differs from %+v", got, pub)
	}
	got.Dup = true // what paho's resume does
	if pub.Dup {
		t.Fatal("marking the stored packet changed the one being sent")
	}
}
