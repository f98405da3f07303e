// Package brokerclient connects the hub to an external MQTT broker
// (Mosquitto, an EMQX cluster) with paho, as the ingest's transport.
package brokerclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"linli/shared/brokerlist"
)

// Options configure the connection.
type Options struct {
	// Broker is tcp://host:port or ssl://host:port, or an ordered,
	// comma-separated list of them (an active/standby pair): the hub
	// fails over along it as edges do (see brokerlist.Parse).
	Broker   string
	ClientID string
	Username string
	Password string
	Logger   *slog.Logger
}

// Client is the hub's session with an external broker. It resubscribes
// after every reconnect.
type Client struct {
	c    mqtt.Client
	log  *slog.Logger
	mu   sync.Mutex
	subs map[string]mqtt.MessageHandler
	// at is the broker of the list being tried, then the one connected.
	at atomic.Pointer[string]
}

// ErrRefused means the broker refused the hub's login (bad user name or
// password, or not authorised).
var ErrRefused = errors.New("the broker refused the hub's login")

const (
	// retryInterval is the wait between two connection attempts in Dial.
	retryInterval = time.Second
	// connectTimeout bounds one broker's connect attempt.
	connectTimeout = 10 * time.Second
)

// Dial connects, retrying until ctx ends. A refused login is retried too
// (the hub writes Mosquitto's password file and asks for a reload just
// before it dials, so the first attempts may come too early); if it is
// still refused when ctx ends, the error wraps ErrRefused and names the
// login.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	brokers, err := brokerlist.Parse(opts.Broker)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	cl := &Client{log: opts.Logger, subs: map[string]mqtt.MessageHandler{}}
	co := mqtt.NewClientOptions()
	// Paho tries the brokers in order on every connect and reconnect and
	// keeps the first that answers: the hub prefers the first broker and
	// stays on the next one it failed over to until that one goes away.
	for _, b := range brokers {
		co.AddBroker(b)
	}
	co.SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		// A persistent session: the broker queues edges' batches for the
		// hub while it restarts (Mosquitto: max_queued_messages permitting;
		// anything dropped is resent by the edges after their ack timeout).
		SetCleanSession(false).
		SetStore(newCopyingStore()).
		SetAutoReconnect(true).
		// Dial retries itself: paho's own retry would hide why each
		// attempt failed.
		SetConnectRetry(false).
		SetMaxReconnectInterval(5 * time.Second).
		SetKeepAlive(10 * time.Second).
		// A black-holed broker costs each connect attempt this long
		// before paho tries the next one in the list.
		SetConnectTimeout(connectTimeout).
		// MQTT 3.1.1, said outright: left unset, paho retries a broker
		// that did not accept CONNECT with MQTT 3.1, a second timeout
		// spent on every dead broker before it moves to the next.
		SetProtocolVersion(4).
		// Each message gets its own goroutine, so a handler may block for
		// backpressure; the broker's inflight window bounds how many wait.
		SetOrderMatters(false).
		SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
			if n, ok := n.(mqtt.ConnectionNotificationBroker); ok {
				b := n.Broker.String()
				cl.at.Store(&b)
			}
		}).
		// A message no subscription routes (queued for the session's
		// subscriptions before a restart, or on its way when a filter was
		// unsubscribed) is acked and dropped; paho leaves it unacked
		// otherwise, and once the broker's inflight window is full of such
		// messages nothing more reaches the session. Its sender resends it
		// after its ack timeout, to whoever serves the site then.
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			opts.Logger.Debug("message on no subscription dropped", "topic", m.Topic())
		}).
		SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			opts.Logger.Warn("lost external broker; reconnecting", "err", err)
		})
	cl.c = mqtt.NewClient(co)
	var last error
	for {
		tok := cl.c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			cl.c.Disconnect(0)
			return nil, dialError(opts, ctx.Err(), last)
		}
		if last = tok.Error(); last == nil {
			return cl, nil
		}
		if refused(last) {
			opts.Logger.Warn("the external broker refuses the hub's login; retrying", "broker", opts.Broker, "user", opts.Username, "err", last)
		} else {
			opts.Logger.Debug("connect to the external broker failed; retrying", "broker", opts.Broker, "err", last)
		}
		select {
		case <-ctx.Done():
			return nil, dialError(opts, ctx.Err(), last)
		case <-time.After(retryInterval):
		}
	}
}

func refused(err error) bool {
	return errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised)
}

// dialError says why Dial gave up: the context's end, and what the last
// attempt was told.
func dialError(opts Options, ctxErr, last error) error {
	switch {
	case last == nil:
		return fmt.Errorf("connect %s: %w", opts.Broker, ctxErr)
	case refused(last):
		return fmt.Errorf("connect %s as %q: %w (%v); gave up: %w", opts.Broker, opts.Username, ErrRefused, last, ctxErr)
	default:
		return fmt.Errorf("connect %s: %w; last attempt: %v", opts.Broker, ctxErr, last)
	}
}

// onConnect says which broker of the list the session is on (after a
// failover, the operator's first question) and resubscribes.
func (cl *Client) onConnect(c mqtt.Client) {
	cl.log.Info("connected to the external broker", "broker", cl.Broker())
	cl.resubscribe(c)
}

func (cl *Client) resubscribe(c mqtt.Client) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	// A few SUBSCRIBEs for all the filters, not one each: a worker
	// serving hundreds of sites resubscribes in a few round trips. The
	// handlers are paho's routes from the first subscription, which a
	// reconnect keeps. Not waited on here: this runs on paho's goroutine
	// (paho#474).
	batch := map[string]byte{}
	for f := range cl.subs {
		batch[f] = 1
		if len(batch) == subscribeBatch {
			c.SubscribeMultiple(batch, nil)
			batch = map[string]byte{}
		}
	}
	if len(batch) > 0 {
		c.SubscribeMultiple(batch, nil)
	}
}

// subscribeBatch is the most filters in one SUBSCRIBE.
const subscribeBatch = 128

// SubscribeMany subscribes to every filter with h, in one SUBSCRIBE per
// subscribeBatch filters, each waited for.
func (cl *Client) SubscribeMany(filters []string, h func(topic string, payload []byte)) error {
	mh := func(_ mqtt.Client, m mqtt.Message) { h(m.Topic(), m.Payload()) }
	cl.mu.Lock()
	for _, f := range filters {
		cl.subs[f] = mh
	}
	cl.mu.Unlock()
	for chunk := range slices.Chunk(filters, subscribeBatch) {
		batch := make(map[string]byte, len(chunk))
		for _, f := range chunk {
			batch[f] = 1
		}
		tok := cl.c.SubscribeMultiple(batch, mh)
		if !tok.WaitTimeout(10 * time.Second) {
			return fmt.Errorf("subscribe to %d filters: timed out", len(chunk))
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("subscribe to %d filters: %w", len(chunk), err)
		}
	}
	return nil
}

// Subscribe calls h for every message on filter, each on its own goroutine;
// h may block, and the broker's inflight window then holds back the rest.
func (cl *Client) Subscribe(filter string, h func(topic string, payload []byte)) error {
	mh := func(_ mqtt.Client, m mqtt.Message) { h(m.Topic(), m.Payload()) }
	cl.mu.Lock()
	cl.subs[filter] = mh
	cl.mu.Unlock()
	tok := cl.c.Subscribe(filter, 1, mh)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("subscribe timed out")
	}
	return tok.Error()
}

// Unsubscribe ends the subscription to filter, also for the sessions
// after a reconnect.
func (cl *Client) Unsubscribe(filter string) error {
	cl.mu.Lock()
	delete(cl.subs, filter)
	cl.mu.Unlock()
	tok := cl.c.Unsubscribe(filter)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("unsubscribe timed out")
	}
	return tok.Error()
}

// Publish sends at QoS 1 without waiting for the broker's PUBACK.
func (cl *Client) Publish(topic string, payload []byte, retain bool) error {
	tok := cl.c.Publish(topic, 1, retain, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	default:
		return nil
	}
}

// Connected reports whether the session with the broker is up (paho
// reconnects by itself when it is not).
func (cl *Client) Connected() bool { return cl.c.IsConnectionOpen() }

// Broker is the broker of the list the session is on, or was last on.
func (cl *Client) Broker() string {
	if b := cl.at.Load(); b != nil {
		return *b
	}
	return ""
}

// Close disconnects.
func (cl *Client) Close() { cl.c.Disconnect(250) }
