package uplink_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"linli/edge/outbox"
	"linli/edge/uplink"
	"linli/shared/event"
	"linli/shared/identity"
	"linli/shared/test/edgetest"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

var _ uplink.RawLog = (*outbox.Log)(nil)

type allowAll struct{ mochi.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }

func broker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return "tcp://" + addr
}

// fakeHub answers hellos and acks every batch's range, collecting events.
// With sign set it signs its acks, as the hub does.
type fakeHub struct {
	sign func([]byte) ([]byte, error)
	// start is the seq the hub holds up to at first; horizon, when set,
	// goes into every ack as the backup horizon.
	start   uint64
	horizon *uint64
	mu      sync.Mutex
	hellos  []wire.Hello
	events  []event.Event
	batches int
	zstd    int
}

func (h *fakeHub) run(t *testing.T, url, site, device string) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("hub-test").SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	ackTopic := wire.Topic(site, device, wire.LeafAck)
	acked := h.start
	tok := c.Subscribe(wire.Topic(site, device, wire.LeafUp), 1, func(c paho.Client, m paho.Message) {
		up, err := wire.DecodeUp(m.Payload())
		if err != nil {
			t.Errorf("decode up: %v", err)
			return
		}
		var a wire.Ack
		h.mu.Lock()
		switch {
		case up.Hello != nil:
			h.hellos = append(h.hellos, *up.Hello)
			a = wire.Ack{Acked: acked, Hello: true, Device: device}
		case up.Batch != nil:
			evs, err := up.Batch.Open(device)
			if err != nil {
				t.Errorf("open batch: %v", err)
				h.mu.Unlock()
				return
			}
			if up.Batch.From == acked+1 {
				h.events = append(h.events, evs...)
				h.batches++
				if up.Batch.Codec == wire.CodecZstd {
					h.zstd++
				}
				acked = up.Batch.To
			}
			a = wire.Ack{Acked: acked, Device: device}
		}
		a.Horizon = h.horizon
		h.mu.Unlock()
		payload, err := wire.Encode(a)
		if err == nil && h.sign != nil {
			payload, err = h.sign(payload)
		}
		if err != nil {
			t.Error(err)
			return
		}
		c.Publish(ackTopic, 1, false, payload) // never wait inside a handler
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
}

// The uplink streams a backlog from the outbox as batches built from the
// stored encodings; the hub gets every event exactly as stored, in order.
func TestStreamsBacklogFromStoredEncodings(t *testing.T) {
	url := broker(t)
	const site, device, n = "s1", "gw-1", 1203
	l, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: device, Retention: time.Hour, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := range n {
		var body event.Body = &event.Checkin{Resident: "R1", Activity: "A7", Action: "in", Status: event.StatusRecorded}
		if i%3 == 0 {
			body = &event.Access{Door: "B1-main", Credential: "h:0011223344556677", Result: "granted"}
		}
		if _, err := l.Append(ctx, body); err != nil {
			t.Fatal(err)
		}
	}
	hub := &fakeHub{}
	hub.run(t, url, site, device)
	up := uplink.New(l, nil, uplink.Options{Broker: url, Site: site, Device: device, Role: "gateway",
		BatchEvents: 500, Window: 2, Compress: true, AckTimeout: 5 * time.Second})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- up.Run(rctx) }()
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		_, acked, pending := l.Cursors()
		return acked == n && pending == 0, fmt.Sprintf("not drained: %+v", l.Stats())
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want, err := l.Read(0, n+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if len(hub.events) != n || hub.batches != 3 || hub.zstd != 3 {
		t.Fatalf("hub got %d events in %d batches (%d zstd), want %d in 3 compressed", len(hub.events), hub.batches, hub.zstd, n)
	}
	for i := range want {
		g, w := hub.events[i], want[i]
		if g.Device != w.Device || g.Seq != w.Seq || g.HLC != w.HLC || g.Kind != w.Kind || !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("event %d: hub got %+v, stored %+v", i, g, w)
		}
	}
	if st := up.Stats(); st.Events != n || st.Batches != 3 {
		t.Fatalf("uplink stats %+v", st)
	}
}

// A broker that accepts the connection and never answers CONNECT (a black
// hole after the handshake: no reset ever comes) is given up on after two
// keepalives, not the old fixed 10 s, and the uplink tries again.
func TestConnectGivesUpOnSilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		accepted []time.Time
		conns    []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, time.Now())
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	l, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	up := uplink.New(l, nil, uplink.Options{Broker: "tcp://" + ln.Addr().String(), Site: "s1", Device: "gw-1", Role: "gateway",
		KeepAlive: 500 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- up.Run(ctx) }()
	var gap time.Duration
	poll.Eventually(t, 6*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		n := len(accepted)
		if n >= 2 {
			gap = accepted[1].Sub(accepted[0])
		}
		return n >= 2, fmt.Sprintf("%d connection attempts against a silent broker: the first was never given up", n)
	})
	if gap > 3*time.Second {
		t.Fatalf("second attempt %v after the first, want about two keepalives (1 s)", gap)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := up.Stats(); st.ConnectErrs == 0 {
		t.Fatalf("stats %+v: want the silent attempt counted as a connect error", st)
	}
}

// TestForgedAcksAreIgnored: acks that are not the hub's — unsigned, signed
// by another key, for another device, or naming a seq the edge never wrote —
// published on the edge's ack topic by another client change nothing: the
// edge keeps sending and every event reaches the hub, and each is counted.
// One ack above the newest seq used to stop the uplink for good.
func TestForgedAcksAreIgnored(t *testing.T) {
	hubKey, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	signHub := func(p []byte) ([]byte, error) { return identity.Sign(hubKey, "hub", p) }
	verify := func(p []byte) ([]byte, error) { return identity.Open(p, hubKey.Public().(ed25519.PublicKey), "hub") }
	const site, device = "s1", "kiosk-1"
	encode := func(a wire.Ack, sign func([]byte) ([]byte, error)) []byte {
		a.Device = cmp.Or(a.Device, device)
		p, err := wire.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		if sign != nil {
			if p, err = sign(p); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	signOther := func(p []byte) ([]byte, error) { return identity.Sign(otherKey, "hub", p) }
	const far = 1 << 40
	for _, c := range []struct {
		name     string
		enrolled bool // the edge holds the hub's key
		forged   [][]byte
		// ignored are the hub's acks for another device under this id (the
		// one that replaced it numbers above its own base): not this edge's,
		// yet not forged either, so not counted.
		ignored [][]byte
	}{
		{"enrolled", true, [][]byte{
			encode(wire.Ack{Acked: far}, nil),                      // unsigned
			encode(wire.Ack{Acked: far}, signOther),                // another key
			encode(wire.Ack{Acked: 3}, signOther),                  // another key, a plausible seq
			encode(wire.Ack{Acked: 0, Hello: true}, signOther),     // "resend everything"
			encode(wire.Ack{Acked: far}, signHub),                  // the hub's key, a seq never written
			encode(wire.Ack{Acked: 3, Device: "kiosk-2"}, signHub), // the hub's, for another device
			[]byte("junk"),
		}, [][]byte{
			encode(wire.Ack{Acked: far + 3, Base: far}, signHub),
			encode(wire.Ack{Acked: far, Base: far, Hello: true}, signHub),
		}},
		{"unenrolled", false, [][]byte{
			encode(wire.Ack{Acked: far}, nil),
			encode(wire.Ack{Acked: far, Hello: true}, nil),
			encode(wire.Ack{Acked: far}, signOther),
			encode(wire.Ack{Acked: 3, Device: "kiosk-2"}, nil),
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := broker(t)
			l, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: device, Retention: time.Hour, RetentionInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			appendN := func(n int) {
				for range n {
					if _, err := l.Append(ctx, &event.Checkin{Resident: "R1", Activity: "A7", Action: "in", Status: event.StatusRecorded}); err != nil {
						t.Fatal(err)
					}
				}
			}
			hub := &fakeHub{sign: signHub}
			hub.run(t, url, site, device)
			creds := uplink.Creds{}
			if c.enrolled {
				creds.Verify = verify
			}
			logs := &testkit.SyncBuffer{}
			up := uplink.New(l, nil, uplink.Options{Broker: url, Site: site, Device: device, Role: "kiosk",
				BatchEvents: 10, AckTimeout: 30 * time.Second, Creds: func() uplink.Creds { return creds },
				Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- up.Run(rctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			drained := func(n uint64) func() (bool, string) {
				return func() (bool, string) {
					_, acked, pending := l.Cursors()
					hub.mu.Lock()
					got := len(hub.events)
					hub.mu.Unlock()
					return acked == n && pending == 0 && got == int(n), fmt.Sprintf("acked %d pending %d, hub has %d of %d", acked, pending, got, n)
				}
			}
			appendN(25)
			poll.Eventually(t, 20*time.Second, drained(25))

			attacker := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("attacker"))
			if tok := attacker.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			defer attacker.Disconnect(100)
			// The ignored first: once the forged are all counted, the
			// ignored were handled too (one subscription's acks in order).
			for _, f := range append(slices.Clone(c.ignored), c.forged...) {
				if tok := attacker.Publish(wire.Topic(site, device, wire.LeafAck), 1, false, f); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
			}
			poll.Eventually(t, 10*time.Second, func() (bool, string) {
				n := up.Stats().AcksRefused
				return n == uint64(len(c.forged)), fmt.Sprintf("%d acks refused, want %d", n, len(c.forged))
			})
			appendN(25) // the edge goes on sending
			poll.Eventually(t, 20*time.Second, drained(50))
			if n := up.Stats().AcksRefused; n != uint64(len(c.forged)) {
				t.Errorf("%d acks refused, want %d: an ack of another seq base is not forged", n, len(c.forged))
			}
			hub.mu.Lock()
			for i, e := range hub.events {
				if e.Seq != uint64(i+1) {
					t.Errorf("hub event %d has seq %d", i, e.Seq)
				}
			}
			hub.mu.Unlock()
			if n := strings.Count(logs.String(), "ack refused"); n != 1 {
				t.Errorf("%d refused acks logged %d times, want once:\n%s", len(c.forged), n, logs.String())
			}
		})
	}
}

// The hello tells the hub the oldest seq the edge still holds, and the
// backup horizon of the hub's acks reaches the outbox, which keeps acked
// events above it.
func TestHelloSaysFirstHeldAndAcksSetTheHorizon(t *testing.T) {
	url := broker(t)
	const site, device = "s1", "gw-1"
	l, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: device, Retention: time.Hour, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for range 10 {
		if _, err := l.Append(ctx, &event.Checkin{Resident: "R1", Activity: "A7", Action: "in", Status: event.StatusRecorded}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Ack(4, false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReclaimAcked(ctx); err != nil {
		t.Fatal(err)
	}
	horizon := uint64(6)
	hub := &fakeHub{start: 4, horizon: &horizon}
	hub.run(t, url, site, device)
	up := uplink.New(l, nil, uplink.Options{Broker: url, Site: site, Device: device, Role: "gateway", AckTimeout: 5 * time.Second})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- up.Run(rctx) }()
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		h, ok := l.Horizon()
		_, acked, _ := l.Cursors()
		return acked == 10 && ok && h == horizon, fmt.Sprintf("not drained with the horizon: %+v, horizon %d %v", l.Stats(), h, ok)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if len(hub.hellos) == 0 || hub.hellos[0].First != 5 || hub.hellos[0].LastSeq != 10 {
		t.Fatalf("hellos %+v, want the first to say first held 5, last 10", hub.hellos)
	}
}

// racyLog deletes every acked event just before the first hello's answer
// is applied, as retention or the disk guard may between a hello and its
// answer.
type racyLog struct {
	*outbox.Log
	once sync.Once
}

func (r *racyLog) Ack(seq uint64, fromHello bool) error {
	var err error
	if fromHello {
		r.once.Do(func() { _, err = r.ReclaimAcked(context.Background()) })
	}
	if err != nil {
		return err
	}
	return r.Log.Ack(seq, fromHello)
}

// Events deleted between a hello and its answer would leave a hole the
// hub's next ack silently covers: the uplink notices that it now holds
// less than it said and says hello again, so the hub can count them lost.
func TestHelloAgainWhenEventsWentMeanwhile(t *testing.T) {
	url := broker(t)
	const site, device = "s1", "gw-1"
	l, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: device, Retention: time.Hour, RetentionInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for range 10 {
		if _, err := l.Append(ctx, &event.Checkin{Resident: "R1", Activity: "A7", Action: "in", Status: event.StatusRecorded}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Ack(8, false); err != nil { // a hub, since restored, held up to 8
		t.Fatal(err)
	}
	hub := &fakeHub{start: 4} // the restored hub holds up to 4
	hub.run(t, url, site, device)
	up := uplink.New(&racyLog{Log: l}, nil, uplink.Options{Broker: url, Site: site, Device: device, Role: "gateway", AckTimeout: 5 * time.Second})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- up.Run(rctx) }()
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		_, acked, _ := l.Cursors()
		return acked == 10, fmt.Sprintf("not drained: %+v", l.Stats())
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if len(hub.hellos) < 2 || hub.hellos[0].First != 1 || hub.hellos[1].First != 9 {
		t.Fatalf("hellos %+v, want first held 1, then 9 after seqs 1..8 went", hub.hellos)
	}
}

// silentBroker accepts connections and never answers them, as a broker
// behind a black-holed link does; it returns its URL and how many
// connections it has accepted.
func silentBroker(t *testing.T) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "tcp://" + ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

// Given a list of brokers, the uplink moves past dead ones to the first
// that answers: a refused port costs nothing, a silent broker one connect
// timeout (two keepalives), tried once per connect and not again with an
// older protocol; the backlog reaches the hub exactly once.
func TestBrokerListFailsOverToTheFirstThatAnswers(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "tcp://" + dead.Addr().String()
	dead.Close() // nothing listens there now: connections are refused
	silent, accepted := silentBroker(t)
	url := broker(t)
	const site, device, n = "s1", "gw-1", 300
	l, _, err := edgetest.OpenLog(t, t.TempDir(), outbox.Options{Device: device})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range n {
		if _, err := l.Append(context.Background(), &event.Access{Door: "B1-main", Credential: "h:0011223344556677", Result: "granted"}); err != nil {
			t.Fatal(err)
		}
	}
	hub := &fakeHub{}
	hub.run(t, url, site, device)
	up := uplink.New(l, nil, uplink.Options{Broker: refused + ", " + silent + "," + url, Site: site, Device: device, Role: "gateway",
		KeepAlive: 500 * time.Millisecond, AckTimeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- up.Run(ctx) }()
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		_, acked, pending := l.Cursors()
		return acked == n && pending == 0, fmt.Sprintf("acked %d, pending %d, stats %+v", acked, pending, up.Stats())
	})
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := up.Stats(); st.Connects != 1 || st.ConnectErrs != 0 {
		t.Fatalf("stats %+v: want the first connect to succeed through the third broker", st)
	}
	if got := accepted(); got != 1 {
		t.Fatalf("the silent broker saw %d connections, want 1: each broker is tried once per connect", got)
	}
	if took > 10*time.Second {
		t.Fatalf("drained after %v: the dead brokers stalled the edge", took)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	seen := map[uint64]bool{}
	for _, e := range hub.events {
		if seen[e.Seq] {
			t.Fatalf("seq %d reached the hub twice", e.Seq)
		}
		seen[e.Seq] = true
	}
	if len(seen) != n {
		t.Fatalf("hub got %d distinct events, want %d", len(seen), n)
	}
}
