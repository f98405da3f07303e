package brokerclient_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"linli/hub/brokerclient"
	"linli/hub/registry"
	"linli/shared/kv"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

const hubUser, hubPass = "hub-test", "the-hub's-password"

// secureMosquitto runs Mosquitto with the shipped secure config on addr,
// reading the password file and ACL a registry writes (the hub's login
// only: it may read and write every linli/ topic).
func secureMosquitto(t *testing.T, addr string) (string, *testkit.Proc) {
	t.Helper()
	db, err := kv.Open(t.TempDir(), kv.Small, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := registry.Open(registry.NewBadgerStore(db), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := reg.WriteMosquitto(registry.MosquittoFiles{Dir: dir, GID: -1}, hubUser, hubPass); err != nil {
		t.Fatal(err)
	}
	return testkit.MosquittoConf(t, addr, "mosquitto-secure.conf",
		"password_file "+filepath.Join(dir, registry.MosquittoPasswd),
		"acl_file "+filepath.Join(dir, registry.MosquittoACL),
		"user root")
}

func dial(t *testing.T, url, password string, within time.Duration) (*brokerclient.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := brokerclient.Dial(ctx, brokerclient.Options{Broker: url, ClientID: hubUser, Username: hubUser, Password: password})
	if err == nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

// inbox collects what a subscription receives.
type inbox struct {
	mu   sync.Mutex
	msgs map[string][]string // topic → payloads
}

func (in *inbox) handle(topic string, payload []byte) {
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

func TestSubscribeAndPublish(t *testing.T) {
	url, _ := secureMosquitto(t, testkit.FreePort(t))
	c, err := dial(t, url, hubPass, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Connected() {
		t.Fatal("Dial returned a client that is not connected")
	}
	var in inbox
	if err := c.Subscribe("linli/v1/+/+/up", in.handle); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("linli/v1/s1/kiosk-1/up", []byte("batch 1"), false); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("linli/v1/s1/kiosk-1/ack", []byte("not subscribed"), false); err != nil {
		t.Fatal(err)
	}
	poll.WaitFor(t, "the published batch", func() bool { return in.has("linli/v1/s1/kiosk-1/up", "batch 1") })
	if in.has("linli/v1/s1/kiosk-1/ack", "not subscribed") {
		t.Error("a message on a topic outside the filter was delivered")
	}
}

// Mosquitto killed and started again: the client reconnects by itself and
// subscribes again, so what is published afterwards reaches the handler.
func TestReconnectsAfterMosquittoRestarts(t *testing.T) {
	url, broker := secureMosquitto(t, testkit.StablePort(t))
	c, err := dial(t, url, hubPass, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var in inbox
	if err := c.Subscribe("linli/v1/+/+/up", in.handle); err != nil {
		t.Fatal(err)
	}
	broker.Kill()
	poll.WaitFor(t, "the client to notice the broker is gone", func() bool { return !c.Connected() })
	broker.Restart()
	poll.Eventually(t, 30*time.Second, func() (bool, string) { return c.Connected(), "the client to reconnect" })
	// The resubscription is not waited on: publish until it is in place.
	n := 0
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		n++
		if err := c.Publish("linli/v1/s1/kiosk-1/up", []byte("after restart"), false); err != nil {
			return false, err.Error()
		}
		return in.has("linli/v1/s1/kiosk-1/up", "after restart"), "a publish after the restart to come back"
	})
	t.Logf("delivered after %d publishes", n)
}

// A login the broker refuses ends Dial with ErrRefused naming the login,
// not only with the context's deadline.
func TestRefusedLoginIsNamed(t *testing.T) {
	url, _ := secureMosquitto(t, testkit.FreePort(t))
	_, err := dial(t, url, "wrong password", 3*time.Second)
	if !errors.Is(err, brokerclient.ErrRefused) || !strings.Contains(err.Error(), hubUser) {
		t.Fatalf("Dial with a wrong password: %v; want ErrRefused naming %q", err, hubUser)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial: %v; want it to say it gave up at the deadline", err)
	}
}

// With no broker at all Dial gives up when ctx ends and says what the
// last attempt met.
func TestDialGivesUpWithTheLastError(t *testing.T) {
	_, err := dial(t, "tcp://"+testkit.FreePort(t), hubPass, 2*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, brokerclient.ErrRefused) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Dial without a broker: %v; want the deadline and the refused connection", err)
	}
}

// Given an active/standby pair, the client connects to the first broker,
// or to the second when the first is down; when the broker it is on is
// killed it moves to the other and subscribes again there.
func TestFailsOverAlongTheBrokerList(t *testing.T) {
	urlA, brokerA := secureMosquitto(t, testkit.StablePort(t))
	urlB, _ := secureMosquitto(t, testkit.FreePort(t))

	c, err := dial(t, urlA+","+urlB, hubPass, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker() != urlA {
		t.Fatalf("on %q, want the first broker %q", c.Broker(), urlA)
	}
	var in inbox
	if err := c.Subscribe("linli/v1/+/+/up", in.handle); err != nil {
		t.Fatal(err)
	}
	brokerA.Kill()
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		return c.Connected() && c.Broker() == urlB, fmt.Sprintf("on %q (connected %v), want %q", c.Broker(), c.Connected(), urlB)
	})
	// The resubscription is not waited on: publish until it is in place.
	poll.Eventually(t, 30*time.Second, func() (bool, string) {
		if err := c.Publish("linli/v1/s1/kiosk-1/up", []byte("on the standby"), false); err != nil {
			return false, err.Error()
		}
		return in.has("linli/v1/s1/kiosk-1/up", "on the standby"), "a publish on the standby to come back"
	})

	// A dead first broker: a new dial goes to the second (the first
	// client goes: the login is the client id, one session at a time).
	c.Close()
	c2, err := dial(t, urlA+","+urlB, hubPass, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Broker() != urlB {
		t.Fatalf("with the first broker dead, on %q, want %q", c2.Broker(), urlB)
	}
}

// A client back on its persistent session after its process died gets
// what the broker queued for its old subscriptions before it subscribes
// again, more than the broker's inflight window (256). It must ack and
// drop those: kept unacked, they fill the window, and nothing more
// reaches the session, not even what it subscribes to now (a restarted
// hub worker serving other sites than before, or a site handed over
// while its messages were on the way).
func TestUnroutedMessagesDoNotStallTheSession(t *testing.T) {
	url, _ := testkit.Mosquitto(t) // anonymous logins, each its own client id
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old, err := brokerclient.Dial(ctx, brokerclient.Options{Broker: url, ClientID: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	var gone inbox
	if err := old.Subscribe("linli/v1/s1/+/up", gone.handle); err != nil {
		t.Fatal(err)
	}
	old.Close() // the session and its subscription stay on the broker
	pub, err := brokerclient.Dial(ctx, brokerclient.Options{Broker: url, ClientID: "publisher"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	for i := range 400 {
		if err := pub.Publish("linli/v1/s1/kiosk-1/up", fmt.Appendf(nil, "queued %d", i), false); err != nil {
			t.Fatal(err)
		}
	}

	back, err := brokerclient.Dial(ctx, brokerclient.Options{Broker: url, ClientID: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Close)
	var in inbox
	if err := back.Subscribe("linli/v1/s2/+/up", in.handle); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 15*time.Second, func() (bool, string) {
		if err := pub.Publish("linli/v1/s2/kiosk-2/up", []byte("now"), false); err != nil {
			return false, err.Error()
		}
		return in.has("linli/v1/s2/kiosk-2/up", "now"), "a message on the new subscription to arrive"
	})
}
