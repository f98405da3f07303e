package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"linli/shared/event"
	"linli/shared/test/process"
	"linli/shared/wire"
)

// naiveMax bounds the naive baseline's events.
const naiveMax = 100_000

func naiveDur(e *runEnv) time.Duration { return e.pickDur(3*time.Second, 10*time.Second) }

// naiveBaseline is catch-up baseline (b): one JSON message per event,
// QoS 1, each publish waiting for its PUBACK, to a subscriber that stores
// nothing. With brokerURL "" it runs its own mochi-mqtt broker.
func (e *runEnv) naiveBaseline(ctx context.Context, dir string, events []event.Event, brokerURL string) (*baseline, error) {
	if brokerURL == "" {
		srv, addr, err := startMochi()
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := srv.Close(); err != nil {
				e.log.Warn("close baseline broker", "err", err)
			}
		}()
		brokerURL = "tcp://" + addr
	}
	topic := wire.Topic(benchSite, "naive", wire.LeafUp)
	var got atomic.Int64
	sub, err := mqttConnect(brokerURL, "naive-sub")
	if err != nil {
		return nil, err
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got.Add(1) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("subscribe: %v", tok.Error())
	}
	pub, err := mqttConnect(brokerURL, "naive-pub")
	if err != nil {
		return nil, err
	}
	defer pub.Disconnect(100)
	// Render the JSON first: the baseline is the protocol's cost, not
	// encoding/json's.
	limit := min(len(events), naiveMax)
	docs := make([][]byte, limit)
	for i := range docs {
		if docs[i], err = eventJSON(&events[i]); err != nil {
			return nil, err
		}
	}
	dur := naiveDur(e)
	start := time.Now()
	n := 0
	for n < limit && time.Since(start) < dur && ctx.Err() == nil {
		t := pub.Publish(topic, 1, false, docs[n])
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			return nil, fmt.Errorf("publish %d: %v", n, t.Error())
		}
		n++
	}
	took := time.Since(start)
	err = poll(ctx, 30*time.Second, 10*time.Millisecond, func() (bool, error) {
		return got.Load() >= int64(n), fmt.Errorf("subscriber got %d of %d", got.Load(), n)
	})
	if err != nil {
		return nil, err
	}
	return &baseline{n: n, took: took, rate: float64(n) / took.Seconds()}, nil
}

func mqttConnect(url, id string) (paho.Client, error) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second))
	t := c.Connect()
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s as %s: %v", url, id, t.Error())
	}
	return c, nil
}

// startMochi runs a mochi-mqtt broker with the capabilities the hub gives
// its embedded one, letting everyone in.
func startMochi() (*mochi.Server, string, error) {
	addr, err := process.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = event.MaxMessage + 4096
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumClientWritesPending = 1 << 14
	srv := mochi.New(&mochi.Options{Capabilities: caps, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		return nil, "", err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, "", err
	}
	if err := srv.Serve(); err != nil {
		return nil, "", err
	}
	return srv, addr, nil
}

// allowAll lets every client connect, publish and subscribe.
type allowAll struct{ mochi.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }
