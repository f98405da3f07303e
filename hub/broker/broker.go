// Package broker runs the hub's embedded MQTT broker (mochi-mqtt), with
// device authentication and topic ACLs that deny by default, and serves the
// hub's own subscriptions in process.
package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"linli/shared/event"
	"linli/shared/wire"
)

// Authenticator checks a device's credentials at CONNECT and says which
// site it belongs to. Nil means open mode: any well-formed device id may
// connect and its site is taken from its topics.
type Authenticator interface {
	// Authenticate returns the device's site, or an error to refuse it.
	Authenticate(clientID, username string, password []byte) (site string, err error)
}

// Options configure the broker.
type Options struct {
	Listen string      // host:port
	TLS    *tls.Config // serve MQTT over TLS when set
	Auth   Authenticator
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv    *mqtt.Server
	tcp    *listeners.TCP
	log    *slog.Logger
	subID  atomic.Int32
	hook   *aclHook
	closed sync.Once
}

// Start listens on opts.Listen and serves.
func Start(opts Options) (*Broker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = event.MaxMessage + 4096
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumClientWritesPending = 1 << 14
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		// mochi logs every connect at info; keep it to warnings.
		Logger: slog.New(minLevel{opts.Logger.Handler(), slog.LevelWarn}).With("component", "broker"),
	})
	h := &aclHook{auth: opts.Auth, log: opts.Logger, sites: map[string]string{}}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: opts.Listen, TLSConfig: opts.TLS})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker listen on %s: %w", opts.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("broker serve: %w", err)
	}
	return &Broker{srv: srv, tcp: tcp, log: opts.Logger, hook: h}, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.tcp.Address() }

// Subscribe registers an in-process subscription. mochi calls h on the
// publishing client's goroutine, so a slow h slows only that client.
func (b *Broker) Subscribe(filter string, h func(topic string, payload []byte)) error {
	id := int(b.subID.Add(1))
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload)
	})
}

// Publish sends from the hub to subscribers at QoS 1.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	return b.srv.Publish(topic, payload, retain, 1)
}

// Disconnect drops a client's connection (a revoked device).
func (b *Broker) Disconnect(clientID string) {
	if cl, ok := b.srv.Clients.Get(clientID); ok {
		if err := b.srv.DisconnectClient(cl, packets.ErrNotAuthorized); err != nil {
			b.log.Debug("disconnect client", "client", clientID, "err", err)
		}
	}
}

// Refused counts connections and packets the ACLs refused.
func (b *Broker) Refused() (connects, publishes, subscribes uint64) {
	return b.hook.refusedConnects.Load(), b.hook.refusedPublishes.Load(), b.hook.refusedSubscribes.Load()
}

// Close stops the broker and disconnects everyone.
func (b *Broker) Close() error {
	var err error
	b.closed.Do(func() { err = b.srv.Close() })
	return err
}

// aclHook authenticates devices and confines each to its own topics.
type aclHook struct {
	mqtt.HookBase
	auth Authenticator
	log  *slog.Logger

	mu    sync.Mutex
	sites map[string]string // client id → site, set at CONNECT when known

	refusedConnects, refusedPublishes, refusedSubscribes atomic.Uint64
}

func (h *aclHook) ID() string { return "linli-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	id := cl.ID
	if err := validClientID(id); err != nil {
		h.refusedConnects.Add(1)
		h.log.Warn("broker refused connect", "client", id, "err", err)
		return false
	}
	site := ""
	if h.auth != nil {
		s, err := h.auth.Authenticate(id, string(pk.Connect.Username), pk.Connect.Password)
		if err != nil {
			h.refusedConnects.Add(1)
			h.log.Warn("broker refused connect", "client", id, "err", err)
			return false
		}
		site = s
	}
	h.mu.Lock()
	h.sites[id] = site
	h.mu.Unlock()
	return true
}

func (h *aclHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {}

// OnACLCheck allows a device to publish only to its own up and status
// topics and to read only its own ack and down topics and its site's
// all/down. Everything else is refused.
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	ok := h.allowed(cl.ID, topic, write)
	if !ok {
		if write {
			h.refusedPublishes.Add(1)
		} else {
			h.refusedSubscribes.Add(1)
		}
		h.log.Warn("broker ACL refused", "client", cl.ID, "topic", topic, "write", write)
	}
	return ok
}

func (h *aclHook) allowed(id, topic string, write bool) bool {
	site, device, leaf, err := wire.ParseTopic(topic)
	if err != nil {
		return false // wildcards, $SYS and anything not Linli's
	}
	h.mu.Lock()
	bound, known := h.sites[id]
	h.mu.Unlock()
	if !known || (bound != "" && bound != site) {
		return false
	}
	if write {
		return device == id && (leaf == wire.LeafUp || leaf == wire.LeafStatus)
	}
	return (device == id && (leaf == wire.LeafAck || leaf == wire.LeafDown)) ||
		(device == wire.AllDevices && leaf == wire.LeafDown)
}

var errReservedID = errors.New("reserved client id")

func validClientID(id string) error {
	if err := event.ValidID(id); err != nil {
		return err
	}
	if id == wire.AllDevices || id == "hub" || strings.HasPrefix(id, "hub-") {
		return errReservedID
	}
	return nil
}

// minLevel drops records below a level before they reach the handler.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.min} }
