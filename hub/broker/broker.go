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
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"linli/shared/event"
	"linli/shared/wire"
)

// Authenticator checks a device's credentials at CONNECT and says which
// site it belongs to. Nil means open mode: any well-formed device id may
// connect, its site is taken from its topics, and no site's all/down may
// be read.
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
	// ConnectTimeout bounds the time from accept to CONNECT, the TLS
	// handshake included (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

// Broker is a running embedded broker.
type Broker struct {
	srv    *mqtt.Server
	tcp    *listeners.Net
	ln     *listener
	log    *slog.Logger
	subID  atomic.Int32
	subsMu sync.Mutex
	subs   map[string][]int // in-process subscription ids by filter
	hook   *aclHook
	closed sync.Once
	down   atomic.Bool // Close has begun: no new device gets in
}

// Start listens on opts.Listen and serves.
func Start(opts Options) (*Broker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	lim := newLimiter() // the hook's lines and mochi's, per client
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = event.MaxMessage + 4096
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumClientWritesPending = 1 << 14
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		// mochi logs every connect at info; keep it to warnings.
		Logger: slog.New(mochiLog{opts.Logger.Handler(), slog.LevelWarn, lim}).With("component", "broker"),
	})
	h := &aclHook{auth: opts.Auth, log: opts.Logger, lim: lim, sites: map[string]string{}}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker hook: %w", err)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	raw, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker listen on %s: %w", opts.Listen, err)
	}
	ln := newListener(raw, opts.ConnectTimeout, opts.Logger.With("component", "broker"))
	var served net.Listener = ln
	if opts.TLS != nil {
		served = tls.NewListener(ln, opts.TLS)
	}
	tcp := listeners.NewNet("tcp", served)
	if err := srv.AddListener(tcp); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("broker listen on %s: %w", opts.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("broker serve: %w", err)
	}
	return &Broker{srv: srv, tcp: tcp, ln: ln, log: opts.Logger, hook: h}, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.tcp.Address() }

// Subscribe registers an in-process subscription. mochi calls h on the
// publishing client's goroutine, so a slow h slows only that client.
func (b *Broker) Subscribe(filter string, h func(topic string, payload []byte)) error {
	id := int(b.subID.Add(1))
	if err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload)
	}); err != nil {
		return err
	}
	b.subsMu.Lock()
	if b.subs == nil {
		b.subs = map[string][]int{}
	}
	b.subs[filter] = append(b.subs[filter], id)
	b.subsMu.Unlock()
	return nil
}

// Unsubscribe ends every in-process subscription to filter: a hub worker
// handing a site over stops receiving it.
func (b *Broker) Unsubscribe(filter string) error {
	b.subsMu.Lock()
	ids := b.subs[filter]
	delete(b.subs, filter)
	b.subsMu.Unlock()
	for _, id := range ids {
		if err := b.srv.Unsubscribe(filter, id); err != nil {
			return fmt.Errorf("unsubscribe %s: %w", filter, err)
		}
	}
	return nil
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

// closeGrace is how long Close lets mochi end its connections before it
// closes those still open itself.
const closeGrace = time.Second

// Listening reports whether the broker still takes devices in (Close
// has not begun).
func (b *Broker) Listening() bool { return !b.down.Load() }

// Close stops the broker and disconnects everyone.
func (b *Broker) Close() error {
	var err error
	b.closed.Do(func() {
		b.down.Store(true)
		b.ln.quiesce(closeGrace)
		done := make(chan error, 1)
		go func() { done <- b.srv.Close() }()
		select {
		case err = <-done:
		case <-time.After(closeGrace):
			// mochi's Close waits for connections it has not taken in yet
			// (no CONNECT so far), which it cannot close.
			n := b.ln.closeAll()
			b.log.Info("broker closed connections that had not sent CONNECT", "connections", n)
			err = <-done
		}
		// A connection accepted as mochi closed can start after its wait,
		// with nobody left to end it.
		b.ln.closeAll()
	})
	return err
}

// aclHook authenticates devices and confines each to its own topics.
type aclHook struct {
	mqtt.HookBase
	auth Authenticator
	log  *slog.Logger
	lim  *limiter

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
		logLimited(h.log, h.lim, slog.LevelWarn, truncate(id), "broker refused connect", "err", err)
		return false
	}
	site := ""
	if h.auth != nil {
		s, err := h.auth.Authenticate(id, string(pk.Connect.Username), pk.Connect.Password)
		if err != nil {
			h.refusedConnects.Add(1)
			logLimited(h.log, h.lim, slog.LevelWarn, id, "broker refused connect", "err", err)
			return false
		}
		site = s
	}
	h.mu.Lock()
	h.sites[id] = site
	h.mu.Unlock()
	return true
}

// OnDisconnect says which device left and why: mochi's own line for it
// names neither (see mochiLog). A client that reconnects in a loop gets
// one line per logEvery.
func (h *aclHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if err != nil {
		logLimited(h.log, h.lim, slog.LevelInfo, cl.ID, "mqtt client disconnected", "reason", err)
		return
	}
	logLimited(h.log, h.lim, slog.LevelInfo, cl.ID, "mqtt client disconnected")
}

// OnACLCheck allows a device to publish only to its own up and status
// topics and to read only its own ack and down topics and, if it is bound
// to its site, the site's all/down. Everything else is refused, and said once per client every
// logEvery (a client can repeat a refused publish as fast as it likes).
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	ok := h.allowed(cl.ID, topic, write)
	if !ok {
		if write {
			h.refusedPublishes.Add(1)
		} else {
			h.refusedSubscribes.Add(1)
		}
		logLimited(h.log, h.lim, slog.LevelWarn, cl.ID, "broker ACL refused", "topic", truncate(topic), "write", write)
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
	// A site's downlink (rosters, access lists) is for its enrolled
	// devices: a client the authenticator did not bind to a site (an
	// unenrolled device on a loopback demo hub, any id at all) syncs up
	// only.
	return (device == id && (leaf == wire.LeafAck || leaf == wire.LeafDown)) ||
		(device == wire.AllDevices && leaf == wire.LeafDown && bound != "")
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

// mochiLog passes mochi's records of at least min to the hub's log. mochi's
// listener logs the end of every connection that ended with an error as a
// warning with an empty message and the error alone: at every hub stop one
// per connected edge ("use of closed network connection"), and one per
// network cut. Ends a device causes or suffers (EOF, reset, closed, its
// keepalive lapsing, a refusal the ACL hook has logged) drop below the
// floor — OnDisconnect logs them with the device's id — and the rest (a TLS
// handshake that failed, a protocol violation) stay warnings, with a
// message.
//
// mochi's lines about a packet carry the whole packet, payload included
// (a refused 1 MB publish was 10 MB of log): every line is rewritten to
// bounded attributes (boundAttr) and written at most once per client and
// message every logEvery, with the count of lines held back.
type mochiLog struct {
	slog.Handler
	min slog.Level
	lim *limiter
}

func (m mochiLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m mochiLog) Handle(ctx context.Context, r slog.Record) error {
	level, msg := r.Level, r.Message
	if msg == "" {
		var cause error
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
				cause = err
				return false
			}
			return true
		})
		level, msg = slog.LevelWarn, "mqtt connection failed"
		if connectionEnded(cause) {
			level, msg = slog.LevelDebug, "mqtt connection ended"
		}
		if level < m.min {
			return nil
		}
	}
	nr := slog.NewRecord(r.Time, level, msg, r.PC)
	client := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "client" || (a.Key == "remote" && client == "") {
			client = a.Value.String()
		}
		nr.AddAttrs(boundAttr(a)...)
		return true
	})
	ok, suppressed := m.lim.allow(truncate(client), msg)
	if !ok {
		return nil
	}
	if suppressed > 0 {
		nr.AddAttrs(slog.Uint64("suppressed", suppressed))
	}
	return m.Handler.Handle(ctx, nr)
}

func (m mochiLog) WithAttrs(a []slog.Attr) slog.Handler {
	return mochiLog{m.Handler.WithAttrs(a), m.min, m.lim}
}
func (m mochiLog) WithGroup(g string) slog.Handler {
	return mochiLog{m.Handler.WithGroup(g), m.min, m.lim}
}

// connectionEnded tells the ordinary ends of a connection from failures.
func connectionEnded(err error) bool {
	var code packets.Code
	if errors.As(err, &code) {
		return code == packets.ErrBadUsernameOrPassword || code == packets.ErrNotAuthorized ||
			code == packets.ErrKeepAliveTimeout || code == packets.ErrSessionTakenOver ||
			code == packets.CodeDisconnect || code == packets.ErrServerShuttingDown
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}
