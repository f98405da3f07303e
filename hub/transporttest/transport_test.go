package transporttest

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/hub/broker"
	"linli/hub/brokerclient"
	"linli/hub/ingest"
	"linli/hub/registry"
	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
	"linli/shared/wire"
)

// Both transports are the hub's.
var (
	_ ingest.Transport = (*broker.Broker)(nil)
	_ ingest.Transport = (*brokerclient.Client)(nil)

	_ ingest.Unsubscriber = (*broker.Broker)(nil)
	_ ingest.Unsubscriber = (*brokerclient.Client)(nil)
)

const site = "s1"

// fixture is a transport under test with two enrolled kiosks of site s1
// that may connect to it as devices.
type fixture struct {
	tr       ingest.Transport
	url      string            // where devices connect
	password map[string]string // device → broker password
}

// enrolled opens a registry with kiosk-1 and kiosk-2 enrolled.
func enrolled(t *testing.T) (*registry.Registry, map[string]string) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := kv.Open(t.TempDir(), kv.Small, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := registry.Open(registry.NewBadgerStore(db), log)
	if err != nil {
		t.Fatal(err)
	}
	pw := map[string]string{}
	for _, id := range []string{"kiosk-1", "kiosk-2"} {
		tok, _, err := reg.Issue(id, site, "kiosk", "", time.Hour, false)
		if err != nil {
			t.Fatal(err)
		}
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, pw[id], err = reg.Enroll(tok.String(), pub); err != nil {
			t.Fatal(err)
		}
	}
	return reg, pw
}

// embedded is the hub's own broker on a free port, its ACLs fed by the
// registry; the hub subscribes and publishes in process.
func embedded(t *testing.T) fixture {
	reg, pw := enrolled(t)
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Auth: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return fixture{tr: b, url: "tcp://" + b.Addr(), password: pw}
}

// mosquitto is Debian's Mosquitto with the shipped secure config reading
// the password file and ACL the registry writes, and the hub's client of
// it.
func mosquitto(t *testing.T) fixture {
	reg, pw := enrolled(t)
	dir := t.TempDir()
	const hubUser, hubPass = "hub-t", "hub password"
	if err := reg.WriteMosquitto(registry.MosquittoFiles{Dir: dir, GID: -1}, hubUser, hubPass); err != nil {
		t.Fatal(err)
	}
	url, _ := testkit.MosquittoConf(t, testkit.FreePort(t), "mosquitto-secure.conf",
		"password_file "+filepath.Join(dir, registry.MosquittoPasswd),
		"acl_file "+filepath.Join(dir, registry.MosquittoACL),
		"user root")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := brokerclient.Dial(ctx, brokerclient.Options{Broker: url, ClientID: hubUser, Username: hubUser, Password: hubPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return fixture{tr: c, url: url, password: pw}
}

var transports = []struct {
	name  string
	start func(t *testing.T) fixture
}{
	{"embedded", embedded},
	{"mosquitto", mosquitto},
}

// inbox collects messages by topic.
type inbox struct {
	mu   sync.Mutex
	msgs map[string][]string
}

func (in *inbox) add(topic string, payload []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.msgs == nil {
		in.msgs = map[string][]string{}
	}
	in.msgs[topic] = append(in.msgs[topic], string(payload))
}

func (in *inbox) has(topic, payload string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, p := range in.msgs[topic] {
		if p == payload {
			return true
		}
	}
	return false
}

// device is an edge's MQTT session as the uplink opens it: its id as
// client id and user name, QoS 1, a persistent session unless clean.
type device struct {
	id string
	c  mqtt.Client
	in inbox
}

func (f fixture) connect(t *testing.T, id string, clean bool) *device {
	t.Helper()
	d := &device{id: id}
	o := mqtt.NewClientOptions().AddBroker(f.url).SetClientID(id).SetUsername(id).SetPassword(f.password[id]).
		SetCleanSession(clean).SetAutoReconnect(false).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { d.in.add(m.Topic(), m.Payload()) })
	d.c = mqtt.NewClient(o)
	if tok := d.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connects: %v", id, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d
}

func (d *device) subscribe(t *testing.T, topic string) {
	t.Helper()
	tok := d.c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { d.in.add(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s subscribes to %s: %v", d.id, topic, tok.Error())
	}
}

func (d *device) publish(t *testing.T, topic, payload string, retain bool) {
	t.Helper()
	tok := d.c.Publish(topic, 1, retain, payload)
	// A refused publish may end the session (the embedded broker does so
	// for QoS 1 under MQTT 3.1.1): the token then ends with an error.
	tok.WaitTimeout(10 * time.Second)
}

func TestTransports(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("ingest receives a device's publish", func(t *testing.T) {
				f := tr.start(t)
				var hub inbox
				for _, filter := range []string{wire.UpFilter, wire.StatusFilter} {
					if err := f.tr.Subscribe(filter, hub.add); err != nil {
						t.Fatal(err)
					}
				}
				d := f.connect(t, "kiosk-1", true)
				up, status := wire.Topic(site, "kiosk-1", wire.LeafUp), wire.Topic(site, "kiosk-1", wire.LeafStatus)
				d.publish(t, up, "batch", false)
				d.publish(t, status, "online", false)
				poll.WaitFor(t, "the batch and the status at the hub", func() bool { return hub.has(up, "batch") && hub.has(status, "online") })
			})

			t.Run("unsubscribing ends a site's messages", func(t *testing.T) {
				f := tr.start(t)
				var hub inbox
				upFilter := wire.SiteFilter(site, wire.LeafUp)
				if err := f.tr.Subscribe(upFilter, hub.add); err != nil {
					t.Fatal(err)
				}
				if err := f.tr.Subscribe(wire.StatusFilter, hub.add); err != nil {
					t.Fatal(err)
				}
				d := f.connect(t, "kiosk-1", true)
				up, status := wire.Topic(site, "kiosk-1", wire.LeafUp), wire.Topic(site, "kiosk-1", wire.LeafStatus)
				d.publish(t, up, "before", false)
				poll.WaitFor(t, "the batch at the hub", func() bool { return hub.has(up, "before") })
				if err := f.tr.(ingest.Unsubscriber).Unsubscribe(upFilter); err != nil {
					t.Fatal(err)
				}
				// The status published after is the barrier: once it is in,
				// the batch published before it would have been too.
				d.publish(t, up, "after", false)
				d.publish(t, status, "online", false)
				poll.WaitFor(t, "the status at the hub", func() bool { return hub.has(status, "online") })
				if hub.has(up, "after") {
					t.Fatal("a batch published after the unsubscribe reached the hub")
				}
			})

			t.Run("down to a device and to its site", func(t *testing.T) {
				f := tr.start(t)
				own, all := wire.Topic(site, "kiosk-1", wire.LeafDown), wire.SiteDown(site)
				d := f.connect(t, "kiosk-1", true)
				d.subscribe(t, own)
				d.subscribe(t, all)
				poll.WaitFor(t, "both down messages at the device", func() bool {
					// Resent until they arrive: a subscription is in force at
					// its SUBACK on both brokers, but say so by behaviour.
					if err := f.tr.Publish(own, []byte("yours"), false); err != nil {
						t.Fatal(err)
					}
					if err := f.tr.Publish(all, []byte("everyone's"), false); err != nil {
						t.Fatal(err)
					}
					return d.in.has(own, "yours") && d.in.has(all, "everyone's")
				})
			})

			t.Run("QoS 1 reaches a device across its reconnect", func(t *testing.T) {
				f := tr.start(t)
				own := wire.Topic(site, "kiosk-1", wire.LeafDown)
				d := f.connect(t, "kiosk-1", false)
				d.subscribe(t, own)
				d.c.Disconnect(250)
				if err := f.tr.Publish(own, []byte("while away"), false); err != nil {
					t.Fatal(err)
				}
				back := f.connect(t, "kiosk-1", false) // same session, no new subscription
				poll.WaitFor(t, "the message published while the device was away", func() bool { return back.in.has(own, "while away") })
			})

			t.Run("retained status", func(t *testing.T) {
				f := tr.start(t)
				status1, status2 := wire.Topic(site, "kiosk-1", wire.LeafStatus), wire.Topic(site, "kiosk-2", wire.LeafStatus)
				k1, k2 := f.connect(t, "kiosk-1", true), f.connect(t, "kiosk-2", true)
				k1.publish(t, status1, "online", true)
				// The hub subscribing after the device said it (a hub that
				// restarts) still learns it.
				var first inbox
				poll.WaitFor(t, "kiosk-1's retained status at a later subscription", func() bool {
					if err := f.tr.Subscribe(wire.StatusFilter, first.add); err != nil {
						t.Fatal(err)
					}
					return first.has(status1, "online")
				})
				// The hub clears a revoked device's status: a later
				// subscription gets kiosk-2's, said after, and not kiosk-1's.
				if err := f.tr.Publish(status1, nil, true); err != nil {
					t.Fatal(err)
				}
				k2.publish(t, status2, "online", true)
				// Each try subscribes afresh into an empty inbox. Neither
				// the clear nor the subscription waits for the broker (the
				// external client's Publish does not wait for its PUBACK,
				// and paho sends a SUBSCRIBE ahead of queued publishes),
				// and a retained copy answering an earlier subscription
				// may still be on its way: so the clear must show within
				// the deadline, not at the first try. A broker that keeps
				// the cleared status fails every try.
				var second *inbox
				var since time.Time
				poll.Eventually(t, 10*time.Second, func() (bool, string) {
					if second == nil || time.Since(since) > time.Second {
						second, since = &inbox{}, time.Now()
						if err := f.tr.Subscribe(wire.StatusFilter, second.add); err != nil {
							t.Fatal(err)
						}
					}
					switch {
					case !second.has(status2, "online"):
						return false, "kiosk-2's retained status did not arrive"
					case second.has(status1, "online"):
						second = nil // try a fresh subscription
						return false, "kiosk-1's cleared status was still retained"
					}
					return true, ""
				})
			})

			t.Run("a device cannot use another device's topics", func(t *testing.T) {
				f := tr.start(t)
				var hub inbox
				if err := f.tr.Subscribe(wire.UpFilter, hub.add); err != nil {
					t.Fatal(err)
				}
				up2, down2 := wire.Topic(site, "kiosk-2", wire.LeafUp), wire.Topic(site, "kiosk-2", wire.LeafDown)
				k2 := f.connect(t, "kiosk-2", true)
				k2.subscribe(t, down2)
				thief := f.connect(t, "kiosk-1", true)
				thief.c.Subscribe(down2, 1, nil).WaitTimeout(10 * time.Second) // refused or never served
				thief.publish(t, up2, "forged", false)
				// kiosk-2's own publish and down message go through after
				// the forged ones; by then those would have arrived too.
				k2.publish(t, up2, "genuine", false)
				poll.WaitFor(t, "kiosk-2's own batch and down message", func() bool {
					if err := f.tr.Publish(down2, []byte("for kiosk-2"), false); err != nil {
						t.Fatal(err)
					}
					return hub.has(up2, "genuine") && k2.in.has(down2, "for kiosk-2")
				})
				if hub.has(up2, "forged") {
					t.Errorf("the hub received kiosk-1's publish on kiosk-2's topic")
				}
				if thief.in.has(down2, "for kiosk-2") {
					t.Errorf("kiosk-1 received kiosk-2's down message")
				}
			})
		})
	}
}
