package wire

import "testing"

// An ack's horizon travels as sent: absent means the hub takes no
// backups, and a horizon of 0 (nothing backed up yet) must not read as
// absent. A hello's oldest held seq round-trips, and a hello without one
// (an older edge) decodes as 0, "unknown".
func TestAckHorizonAndHelloFirstRoundTrip(t *testing.T) {
	zero, seven := uint64(0), uint64(7)
	for _, tc := range []struct {
		name    string
		horizon *uint64
	}{{"absent", nil}, {"zero", &zero}, {"seven", &seven}} {
		b, err := Encode(Ack{Acked: 9, Device: "k1", Horizon: tc.horizon})
		if err != nil {
			t.Fatal(err)
		}
		a, err := DecodeAck(b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.horizon == nil && a.Horizon != nil:
			t.Errorf("%s: decoded horizon %d, want absent", tc.name, *a.Horizon)
		case tc.horizon != nil && (a.Horizon == nil || *a.Horizon != *tc.horizon):
			t.Errorf("%s: decoded horizon %v, want %d", tc.name, a.Horizon, *tc.horizon)
		}
	}
	for _, first := range []uint64{0, 21} {
		b, err := Encode(Up{Hello: &Hello{Role: "kiosk", LastSeq: 25, First: first}})
		if err != nil {
			t.Fatal(err)
		}
		u, err := DecodeUp(b)
		if err != nil || u.Hello.First != first {
			t.Errorf("hello first %d: decoded %+v, %v", first, u.Hello, err)
		}
	}
}
