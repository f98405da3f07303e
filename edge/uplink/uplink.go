// Package uplink is the edge's MQTT session with the hub: it says hello,
// streams outbox events in signed-off CBOR batches with several in flight,
// advances the outbox cursor only on the hub's end-to-end acks, and
// reconnects with capped, jittered backoff.
package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"linli/shared/backoff"
	"linli/shared/brokerlist"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/wire"
)

// Log is what the uplink needs of the outbox.
type Log interface {
	// Read returns stored events with seq > after in order, bounded by
	// count and bytes; an error means the store failed.
	Read(after uint64, maxEvents, maxBytes int) ([]event.Event, error)
	// Ack records the hub's high-water mark; fromHello lets it go back.
	Ack(seq uint64, fromHello bool) error
	// Notify is signalled after appends.
	Notify() <-chan struct{}
	// Clock is the edge's HLC; the uplink observes the hub's clock.
	Clock() *hlc.Clock
	// Cursors reports the newest written seq, the acked seq and how many
	// events wait.
	Cursors() (last, acked, pending uint64)
}

// HorizonLog is a Log that keeps acked events until the hub's backups
// cover them (the outbox); a Log without it goes by retention alone.
type HorizonLog interface {
	// SetHorizon records the hub's backup horizon from an ack; ok false:
	// the hub takes no backups.
	SetHorizon(seq uint64, ok bool) error
	// FirstHeld is the oldest seq still stored (the next seq when none).
	FirstHeld() (uint64, error)
}

// Downlink receives what the hub sends down. Handle and Head must not
// block: the MQTT client calls them on its own goroutine.
type Downlink interface {
	Cursor() uint64
	Handle(topic string, payload []byte)
	// Head tells the downlink the head of the hub's change log.
	Head(head uint64)
	// Acks delivers cursor reports to send to the hub.
	Acks() <-chan wire.DownAck
}

// DefaultWindow is how many batches an edge keeps in flight: at 1,000
// events a batch, 64,000 events, more than a hub's largest group commit
// on PostgreSQL (40,000). The hub grows a group to what has arrived while
// the one before commits, and a commit on PostgreSQL pays its fixed costs
// per group: with 16 in flight a catch-up's groups were 7,000-8,000
// events (against COPY 42.3-52.6 %, median 43.1, 7 pairs), with 32
// 16,000 (46.3-52.3 %, median 47.9); 64 with groups of up to 40,000
// against 32 with 20,000: median 49.2 -> 50.5 % (10 pairs). The edge keeps
// no payload per batch in flight: a resend reads the outbox again.
const DefaultWindow = 64

// Options configure an Uplink.
type Options struct {
	// Broker is the hub's broker, tcp://host:port or ssl://host:port, or
	// an ordered comma-separated list of them to fail over between (see
	// Brokers).
	Broker   string
	Site     string
	Device   string
	Role     string
	Version  string
	Username string
	Password string

	BatchEvents int           // most events per batch (default 1000)
	BatchBytes  int           // most encoded event bytes per batch (default 256 KiB)
	Window      int           // batches in flight before waiting for acks (default DefaultWindow)
	Compress    bool          // zstd batches
	AckTimeout  time.Duration // resend from the acked seq when acks stall (default 10s)
	KeepAlive   time.Duration // MQTT keepalive (default 10s)
	BackoffMin  time.Duration // first reconnect delay (default 250ms)
	BackoffMax  time.Duration // reconnect delay cap (default 10s)
	Logger      *slog.Logger
	Now         func() time.Time
	// Creds, when set, is asked at every connect for the credentials of
	// the session (they appear when the edge enrolls while running).
	Creds func() Creds
	// OnIdentity, when set, hears what may have become of the edge's
	// identity: the broker refused its login (err set), or a signed ack
	// of the hub said "replaced" or "revoked". It must not block.
	OnIdentity func(state string, err error)
	// OnUntrusted, when set, hears that a broker's certificate did not
	// verify against the CAs the edge trusts (the hub may have rotated
	// its site CA while this edge was away). It must not block.
	OnUntrusted func(err error)
	// Hold, when it says true, keeps the uplink from holding a session
	// while nothing is pending: a replaced edge yields its id's client id
	// to its replacement once it has delivered what it holds, and comes
	// back only to deliver what it records after.
	Hold func() bool
}

// Creds are an enrolled edge's credentials.
type Creds struct {
	Username, Password string
	// Sign wraps each up message in the device's signature; nil sends
	// unsigned (an edge that has not enrolled, on a loopback demo hub).
	Sign func(payload []byte) ([]byte, error)
	// Verify checks the hub's signature on an ack and returns the signed
	// payload, or an error for an ack the hub did not sign. Nil: the edge
	// has no hub key yet (not enrolled) and reads acks unverified.
	Verify func(envelope []byte) ([]byte, error)
	TLS    *tls.Config
	// CA are the fingerprints of the site CAs TLS trusts, said in the
	// hello.
	CA []string
	// Base is the seq base this edge numbers above: acks for another base
	// answer another device under the same id.
	Base uint64
}

func (o *Options) defaults() {
	// A catch-up is bound by the hub's group commits: batches of 1,000,
	// DefaultWindow of them in flight (8 of 500 let the hub commit about
	// 1,400 events at a time; 16 of 1,000 4,000-8,000, which drained
	// 1,000,000 events 10-15 % faster on 2 cores).
	if o.BatchEvents <= 0 {
		o.BatchEvents = 1000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 256 << 10
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 10 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Uplink runs the session. Create it with New and call Run once.
type Uplink struct {
	log  Log
	down Downlink
	opts Options
	lg   *slog.Logger

	connected atomic.Bool
	lastSync  atomic.Int64 // unix ms of the last ack
	stats     Stats
	statsMu   sync.Mutex

	// Set by MQTT handlers, read by the session loop; handlers never block.
	ackSeq   atomic.Uint64
	ackHello atomic.Bool
	ackSig   chan struct{}
	prioSig  chan struct{}
	kick     chan struct{}
	sign     func([]byte) ([]byte, error) // of the current session
	trust    []string                     // the session's Creds.CA, for its hello
	prioMu   sync.Mutex
	prio     []prioEvent // kept until the hub acks them
	sessions atomic.Uint64
	rawBuf   []byte // sendNext's batch buffer, reused (the session loop only)

	refusedLogged atomic.Int64 // unix ms of the last refused-ack line
	// horizon is the backup horizon of the newest ack (nil: none came
	// yet), set by the ack handler and recorded by the session loop.
	horizon atomic.Pointer[horizonMark]
}

// horizonMark is the backup horizon an ack carried; ok false: the hub
// takes no backups.
type horizonMark struct {
	seq uint64
	ok  bool
}

// maxRawBuf bounds the batch buffer kept between batches: a batch's bytes
// (Options.BatchBytes) plus one event over, for the defaults.
const maxRawBuf = 1 << 20

// prioEvent is an alarm on the priority path and the session that last
// sent it (0: none yet).
type prioEvent struct {
	ev   event.Event
	sent uint64
}

// maxPrio bounds the events kept on the priority path while the hub is
// away; older ones still reach it with the backlog.
const maxPrio = 1024

// Stats counts what the uplink did, for metrics.
type Stats struct {
	Connects    uint64
	Batches     uint64
	Events      uint64 // events sent, resends included
	Bytes       uint64
	Acks        uint64
	Resends     uint64 // windows resent after an ack timeout
	Priority    uint64 // priority batches (alarms)
	ConnectErrs uint64
	// AcksRefused counts acks ignored: not signed by the hub, for another
	// device, undecodable, or naming a seq this edge never wrote.
	AcksRefused uint64
}

// New returns an uplink for log. down may be nil.
func New(log Log, down Downlink, opts Options) *Uplink {
	opts.defaults()
	return &Uplink{log: log, down: down, opts: opts, lg: opts.Logger,
		ackSig: make(chan struct{}, 1), prioSig: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
}

// Reconnect ends the current session so the next one uses fresh
// credentials; it never blocks.
func (u *Uplink) Reconnect() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

var errKicked = errors.New("reconnect requested")

// publishUp encodes, signs and publishes an up message.
func (u *Uplink) publishUp(c mqtt.Client, up wire.Up) (int, error) {
	payload, err := wire.Encode(up)
	if err != nil {
		return 0, fmt.Errorf("encode up message: %w", err)
	}
	if u.sign != nil {
		if payload, err = u.sign(payload); err != nil {
			return 0, fmt.Errorf("sign up message: %w", err)
		}
	}
	// The token is not waited on: PUBACK only says the broker has it, and
	// paho can complete tokens with a nil error on a dropped connection.
	// Only the hub's ack moves the cursor.
	c.Publish(u.topic(wire.LeafUp), 1, false, payload)
	return len(payload), nil
}

// Connected reports whether a session with the hub is up (hello answered).
func (u *Uplink) Connected() bool { return u.connected.Load() }

// LastSync is the time of the last ack from the hub, or zero.
func (u *Uplink) LastSync() time.Time {
	ms := u.lastSync.Load()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Stats returns a copy of the counters.
func (u *Uplink) Stats() Stats {
	u.statsMu.Lock()
	defer u.statsMu.Unlock()
	return u.stats
}

func (u *Uplink) count(f func(*Stats)) {
	u.statsMu.Lock()
	f(&u.stats)
	u.statsMu.Unlock()
}

// SendPriority queues an event that was just appended (an alarm) to go out
// at once in its own batch, ahead of any backlog: now if a session is up,
// else first thing in the next one. It is sent again in every new session
// until the hub acks it, since a dropped connection may lose a publish.
// It never blocks.
func (u *Uplink) SendPriority(ev event.Event) {
	u.prioMu.Lock()
	u.prio = append(u.prio, prioEvent{ev: ev})
	if n := len(u.prio); n > maxPrio {
		u.prio = append([]prioEvent(nil), u.prio[n-maxPrio:]...)
	}
	u.prioMu.Unlock()
	select {
	case u.prioSig <- struct{}{}:
	default:
	}
}

// Run keeps a session up until ctx ends. It returns nil on cancellation.
func (u *Uplink) Run(ctx context.Context) error {
	bo := backoff.Backoff{Min: u.opts.BackoffMin, Max: u.opts.BackoffMax}
	failures := 0
	wasHeld := false
	for ctx.Err() == nil {
		if u.held() {
			if !wasHeld {
				u.lg.Info("identity replaced or revoked and nothing left to send: keeping no session")
			}
			wasHeld = true
			select {
			case <-ctx.Done():
				return nil
			case <-u.log.Notify():
			case <-time.After(u.opts.AckTimeout):
			}
			continue
		}
		wasHeld = false
		err := u.session(ctx)
		u.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errHeld) {
			continue
		}
		if errors.Is(err, errSessionEnded) {
			bo.Reset() // the session worked; reconnect quickly
		}
		d := bo.Next()
		// Say it once per outage; a building offline for days must not fill
		// its disk with the same line.
		if errors.Is(err, errSessionEnded) || failures == 0 {
			u.lg.Warn("hub unreachable; serving offline and retrying", "err", err, "in", d.Round(time.Millisecond))
		} else {
			u.lg.Debug("hub still unreachable", "err", err, "in", d.Round(time.Millisecond))
		}
		failures++
		if errors.Is(err, errSessionEnded) {
			failures = 1
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
	return nil
}

var (
	errSessionEnded = errors.New("session ended after a successful hello")
	errHeld         = errors.New("session yielded: identity replaced and nothing pending")
)

// held reports whether Hold says to keep no session and nothing waits.
func (u *Uplink) held() bool {
	if u.opts.Hold == nil || !u.opts.Hold() {
		return false
	}
	_, _, pending := u.log.Cursors()
	return pending == 0
}

func (u *Uplink) topic(leaf string) string { return wire.Topic(u.opts.Site, u.opts.Device, leaf) }

func (u *Uplink) status(online bool) []byte {
	b, err := wire.Encode(wire.Status{Online: online, Role: u.opts.Role, Version: u.opts.Version, Time: u.opts.Now().UnixMilli()})
	if err != nil {
		panic(fmt.Sprintf("encode status: %v", err)) // a fixed struct always encodes
	}
	return b
}

// connectTimeout bounds one connection attempt, CONNACK included: two
// keepalives, 1 to 10 s. A connection the network black-holed after the
// handshake gets no reset and would otherwise be waited on for the full
// timeout; a broker that has not answered within two keepalives is as
// gone as one that misses its pings. (The fault suite's flapping network
// once took 9.3 s, the old fixed 10 s, to resume after a 1 s cut.)
func connectTimeout(keepAlive time.Duration) time.Duration {
	return min(max(2*keepAlive, time.Second), 10*time.Second)
}

// Brokers splits an ordered, comma-separated broker list and checks each
// URL (see brokerlist.Parse: the hub reads its list the same way).
func Brokers(list string) ([]string, error) { return brokerlist.Parse(list) }

func (u *Uplink) session(ctx context.Context) error {
	select { // a kick from before this session is already served
	case <-u.kick:
	default:
	}
	creds := Creds{Username: u.opts.Username, Password: u.opts.Password}
	if u.opts.Creds != nil {
		creds = u.opts.Creds()
	}
	u.sign, u.trust = creds.Sign, creds.CA
	// A replaced edge says nothing of the device's presence: the status
	// topic is its replacement's.
	quiet := func() bool { return u.opts.Hold != nil && u.opts.Hold() }
	brokers, err := Brokers(u.opts.Broker)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	lost := make(chan error, 1)
	// Paho tries the brokers in order on every connect, each for at most
	// one connect timeout, and keeps the first that answers: a dead first
	// broker costs each attempt that timeout (nothing when it refuses the
	// connection outright), and the first broker is preferred again at the
	// next reconnect once it is back.
	var at atomic.Pointer[string] // the broker being tried, then the one connected
	co := mqtt.NewClientOptions()
	for _, b := range brokers {
		co.AddBroker(b)
	}
	co.SetClientID(u.opts.Device).
		SetUsername(creds.Username).
		SetPassword(creds.Password).
		SetTLSConfig(creds.TLS).
		SetCleanSession(true).
		SetAutoReconnect(false). // our loop owns reconnects, with jitter
		SetConnectRetry(false).
		SetKeepAlive(u.opts.KeepAlive).
		SetPingTimeout(u.opts.KeepAlive).
		SetConnectTimeout(connectTimeout(u.opts.KeepAlive)).
		// MQTT 3.1.1, said outright: left unset, paho retries a broker that
		// did not accept CONNECT with MQTT 3.1, spending a second connect
		// timeout on every dead broker before it moves to the next.
		SetProtocolVersion(4).
		// Paho's Publish waits up to the write timeout for its sender to
		// take the packet, and a connection reset mid-stream leaves nobody
		// taking it: the session learnt of the loss only when that wait
		// ended (the fault suite's flapping network once resumed 9.9 s
		// after a 0.4 s cut). The same bound as a connect attempt: 10 s
		// at ordinary keepalives, two keepalives at short ones.
		SetWriteTimeout(connectTimeout(u.opts.KeepAlive)).
		SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
			switch n := n.(type) {
			case mqtt.ConnectionNotificationBroker:
				b := n.Broker.String()
				at.Store(&b)
			case mqtt.ConnectionNotificationBrokerFailed:
				u.lg.Debug("broker unreachable, trying the next", "broker", n.Broker.String(), "err", n.Reason)
				var unknown x509.UnknownAuthorityError
				if errors.As(n.Reason, &unknown) && u.opts.OnUntrusted != nil {
					u.opts.OnUntrusted(n.Reason)
				}
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if !quiet() {
		co.SetBinaryWill(u.topic(wire.LeafStatus), u.status(false), 1, true)
	}
	c := mqtt.NewClient(co)
	tok := c.Connect()
	// Every broker may take its full connect timeout: a fixed bound shorter
	// than the list's sum gave up on the attempt before paho reached the
	// broker that was up, and did so again at every retry.
	bound := time.Duration(len(brokers))*connectTimeout(u.opts.KeepAlive) + 5*time.Second
	if err := waitToken(ctx, tok, bound); err != nil {
		u.count(func(s *Stats) { s.ConnectErrs++ })
		// An attempt given up on must not connect later behind our back,
		// holding the device's client id with no one reading it.
		c.Disconnect(0)
		if refused(err) && u.opts.OnIdentity != nil {
			u.opts.OnIdentity("", err)
		}
		return fmt.Errorf("connect %s: %w", u.opts.Broker, err)
	}
	broker := u.opts.Broker
	if b := at.Load(); b != nil {
		broker = *b
	}
	defer func() {
		if c.IsConnectionOpen() && !quiet() {
			// A clean goodbye: the will is not sent on DISCONNECT.
			c.Publish(u.topic(wire.LeafStatus), 1, true, u.status(false)).WaitTimeout(time.Second)
		}
		c.Disconnect(250)
	}()
	u.count(func(s *Stats) { s.Connects++ })

	verify := creds.Verify
	onAck := func(_ mqtt.Client, m mqtt.Message) {
		a, err := u.checkAck(verify, creds.Base, m.Payload())
		if errors.Is(err, errOtherBase) {
			return // for the other device under this id
		}
		if err != nil {
			u.refuseAck(err)
			return
		}
		if a.Identity != "" {
			// Only the hub's signature makes it worth asking the hub: an
			// edge with no hub key read the ack unverified.
			if verify != nil && u.opts.OnIdentity != nil {
				u.opts.OnIdentity(a.Identity, nil)
			}
			return
		}
		u.log.Clock().Observe(a.Clock)
		if u.down != nil && a.DownHead > 0 {
			u.down.Head(a.DownHead)
		}
		hm := &horizonMark{ok: a.Horizon != nil}
		if hm.ok {
			hm.seq = *a.Horizon
		}
		u.horizon.Store(hm)
		if a.Hello {
			u.ackHello.Store(true)
			u.ackSeq.Store(a.Acked)
		} else {
			for { // keep the highest ack; handlers may race with the session
				cur := u.ackSeq.Load()
				if a.Acked <= cur || u.ackSeq.CompareAndSwap(cur, a.Acked) {
					break
				}
			}
		}
		select {
		case u.ackSig <- struct{}{}:
		default:
		}
	}
	subs := map[string]mqtt.MessageHandler{u.topic(wire.LeafAck): onAck}
	if u.down != nil {
		h := func(_ mqtt.Client, m mqtt.Message) { u.down.Handle(m.Topic(), m.Payload()) }
		subs[u.topic(wire.LeafDown)] = h
		subs[wire.SiteDown(u.opts.Site)] = h
	}
	for t, h := range subs {
		if err := waitToken(ctx, c.Subscribe(t, 1, h), 10*time.Second); err != nil {
			return fmt.Errorf("subscribe %s: %w", t, err)
		}
	}
	if !quiet() {
		if err := waitToken(ctx, c.Publish(u.topic(wire.LeafStatus), 1, true, u.status(true)), 10*time.Second); err != nil {
			return fmt.Errorf("publish status: %w", err)
		}
	}
	acked, err := u.hello(ctx, c, lost)
	if err != nil {
		return err
	}
	u.connected.Store(true)
	u.lg.Info("hub session up", "broker", broker, "hub_acked", acked)
	err = u.stream(ctx, c, lost, acked)
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, errHeld) {
		return err
	}
	return fmt.Errorf("%w: %v", errSessionEnded, err)
}

// Why an ack is refused.
var (
	ErrAckDevice = errors.New("ack for another device")
	ErrAckSeq    = errors.New("ack names a seq this edge never wrote")
)

// checkAck opens an ack from the hub. Anyone who can publish on the ack
// topic could otherwise move the edge's cursor: one ack above the newest
// seq once made the session wait for good for acks that could never come
// (nothing sent, nothing logged), and one below it would drop events the
// hub never got. So an ack must carry the hub's signature (when the edge
// has the hub's key), name this device and name a seq written here; its
// clock and downlink head are read only after that.
func (u *Uplink) checkAck(verify func([]byte) ([]byte, error), base uint64, payload []byte) (wire.Ack, error) {
	var err error
	switch {
	case verify != nil:
		payload, err = verify(payload)
	case identity.IsSigned(payload):
		payload, err = identity.Payload(payload) // no hub key to check it with yet
	}
	if err != nil {
		return wire.Ack{}, fmt.Errorf("ack signature: %w", err)
	}
	a, err := wire.DecodeAck(payload)
	if err != nil {
		return wire.Ack{}, err
	}
	if a.Device != u.opts.Device {
		return wire.Ack{}, fmt.Errorf("%w: %q", ErrAckDevice, a.Device)
	}
	if a.Identity != "" {
		return a, nil // says what became of this id's key; acks no seq
	}
	if a.Base != base {
		// The hub's answer to the device this one replaced, or to the
		// one that replaced it: both share the id's ack topic.
		return wire.Ack{}, errOtherBase
	}
	// This edge numbers its seqs above its base: an ack below it or above
	// the newest seq written is not the hub's.
	if last, _, _ := u.log.Cursors(); a.Acked > last || a.Acked < base {
		return wire.Ack{}, fmt.Errorf("%w: %d, newest written %d, base %d", ErrAckSeq, a.Acked, last, base)
	}
	return a, nil
}

// errOtherBase marks an ack for another key's seqs under this id: not
// refused, just not this edge's.
var errOtherBase = errors.New("ack for another seq base")

// refusedLogEvery is the most often a refused ack is logged: whoever sends
// them can send them fast, and the count is in the metrics.
const refusedLogEvery = time.Minute

// refuseAck counts an ack ignored and says so at most once a minute; it
// never ends the session (the real hub's acks keep coming).
func (u *Uplink) refuseAck(err error) {
	var n uint64
	u.count(func(s *Stats) { s.AcksRefused++; n = s.AcksRefused })
	now := u.opts.Now().UnixMilli()
	last := u.refusedLogged.Load()
	if last != 0 && now-last < refusedLogEvery.Milliseconds() || !u.refusedLogged.CompareAndSwap(last, now) {
		return
	}
	u.lg.Warn("ack refused; ignored (not from the hub, or impossible)", "err", err, "refused_total", n)
}

// hello announces the edge and waits for the hub to say what it has.
func (u *Uplink) hello(ctx context.Context, c mqtt.Client, lost <-chan error) (uint64, error) {
	u.ackHello.Store(false)
	for attempt := 0; attempt < 3; attempt++ {
		last, acked, pending := u.log.Cursors()
		h := &wire.Hello{Role: u.opts.Role, Version: u.opts.Version, LastSeq: last, AckedSeq: acked,
			Clock: u.log.Clock().Now(), Pending: pending, CA: u.trust}
		if hl, ok := u.log.(HorizonLog); ok {
			// The hub records what lies below it and above its own ack as
			// lost, instead of waiting for it for ever.
			first, err := hl.FirstHeld()
			if err != nil {
				return 0, fmt.Errorf("oldest held seq: %w", err)
			}
			h.First = first
		}
		if u.down != nil {
			h.DownCursor = u.down.Cursor()
		}
		if _, err := u.publishUp(c, wire.Up{Hello: h}); err != nil {
			return 0, err
		}
		if err := u.awaitHello(ctx, lost); err != nil {
			return 0, err
		}
		if u.ackHello.Load() {
			if err := u.log.Ack(u.ackSeq.Load(), true); err != nil {
				return 0, err
			}
			if err := u.recordHorizon(); err != nil {
				return 0, err
			}
			_, acked, _ := u.log.Cursors()
			if hl, ok := u.log.(HorizonLog); ok && h.First > 0 {
				// Retention or the disk guard may have deleted acked events
				// between the hello and its answer: say hello again, so the
				// hub counts them as lost rather than finding a silent hole.
				first, err := hl.FirstHeld()
				if err != nil {
					return 0, fmt.Errorf("oldest held seq: %w", err)
				}
				if first > h.First && first > acked+1 {
					u.ackHello.Store(false)
					continue
				}
			}
			u.lastSync.Store(u.opts.Now().UnixMilli())
			return acked, nil
		}
	}
	return 0, errors.New("hub did not answer hello")
}

// recordHorizon hands the newest ack's backup horizon to the log.
func (u *Uplink) recordHorizon() error {
	hl, ok := u.log.(HorizonLog)
	hm := u.horizon.Load()
	if !ok || hm == nil {
		return nil
	}
	if err := hl.SetHorizon(hm.seq, hm.ok); err != nil {
		return fmt.Errorf("store backup horizon: %w", err)
	}
	return nil
}

// awaitHello waits up to AckTimeout for the hub's answer to a hello; it
// returns nil on an answer or a timeout, and an error if the session ends.
func (u *Uplink) awaitHello(ctx context.Context, lost <-chan error) error {
	timer := time.NewTimer(u.opts.AckTimeout)
	defer timer.Stop()
	for !u.ackHello.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-lost:
			return fmt.Errorf("connection lost during hello: %w", err)
		case <-u.kick:
			return errKicked
		case <-timer.C:
			return nil
		case <-u.ackSig:
		}
	}
	return nil
}

type flight struct {
	to uint64
}

// stream sends batches with a window in flight until the connection drops.
func (u *Uplink) stream(ctx context.Context, c mqtt.Client, lost <-chan error, acked uint64) error {
	sent := acked // highest seq covered by a batch sent in this session
	var inflight []flight
	lastProgress := time.Now()
	tick := time.NewTicker(u.opts.AckTimeout / 4)
	defer tick.Stop()
	var downAcks <-chan wire.DownAck
	if u.down != nil {
		downAcks = u.down.Acks()
	}
	session := u.sessions.Add(1)
	for {
		// Alarms first: before the backlog on the first turn of a session,
		// and between batches of the window after that.
		if err := u.sendPriority(c, session, acked); err != nil {
			return err
		}
		for len(inflight) < u.opts.Window {
			to, n, err := u.sendNext(c, sent)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if len(inflight) == 0 {
				lastProgress = time.Now()
			}
			inflight = append(inflight, flight{to: to})
			sent = to
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-lost:
			return fmt.Errorf("connection lost: %w", err)
		case <-u.prioSig:
		case <-u.log.Notify():
		case <-u.kick:
			return errKicked
		case a := <-downAcks:
			if _, err := u.publishUp(c, wire.Up{DownAck: &a}); err != nil {
				return err
			}
		case <-u.ackSig:
			if err := u.recordHorizon(); err != nil {
				return err
			}
			a := u.ackSeq.Load()
			if a > acked {
				if err := u.log.Ack(a, false); err != nil {
					return fmt.Errorf("store ack: %w", err)
				}
				acked = a
				lastProgress = time.Now()
				u.lastSync.Store(u.opts.Now().UnixMilli())
				u.count(func(s *Stats) { s.Acks++ })
			}
			i := 0
			for i < len(inflight) && inflight[i].to <= acked {
				i++
			}
			inflight = inflight[i:]
			if sent < acked {
				sent = acked
			}
		case <-tick.C:
			if len(inflight) == 0 && u.held() {
				return errHeld
			}
			if len(inflight) > 0 && time.Since(lastProgress) > u.opts.AckTimeout {
				// The broker or the hub lost a batch (brokers drop QoS 1 under
				// load; PUBACK is not the hub's ack): resend from the ack.
				u.lg.Warn("acks stalled; resending", "acked", acked, "sent", sent)
				u.count(func(s *Stats) { s.Resends++ })
				sent, inflight, lastProgress = acked, inflight[:0], time.Now()
			}
		}
	}
}

// RawLog is a Log that can also hand out stored events still encoded,
// which spares the uplink a decode and an encode per event (the outbox).
type RawLog interface {
	// ReadRaw appends to dst the stored encodings of up to maxEvents
	// events with seq > after, as Read bounds them, and returns them with
	// their count and the last seq.
	ReadRaw(after uint64, maxEvents, maxBytes int, dst []byte) (raw []byte, n int, last uint64, err error)
}

// sendNext publishes the next batch after seq sent and returns the last
// seq it covers and how many events it carries (0: nothing to send).
func (u *Uplink) sendNext(c mqtt.Client, sent uint64) (to uint64, n int, err error) {
	if rl, ok := u.log.(RawLog); ok {
		// One buffer for every batch: a drain reads gigabytes through it,
		// and a new one per batch (grown as it filled, then copied behind
		// the batch head) was most of what the edge allocated, so the GC
		// ran often under the small profile's heap limit.
		if cap(u.rawBuf) < wire.BatchRawRoom {
			u.rawBuf = make([]byte, 0, 64<<10)
		}
		raw, n, to, err := rl.ReadRaw(sent, u.opts.BatchEvents, u.opts.BatchBytes, u.rawBuf[:wire.BatchRawRoom])
		if cap(raw) <= maxRawBuf {
			u.rawBuf = raw[:0]
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read outbox: %w", err)
		}
		if n == 0 {
			return 0, 0, nil
		}
		b, err := wire.NewBatchRaw(sent+1, to, n, raw, u.opts.Compress, u.log.Clock().Now())
		if err != nil {
			return 0, 0, err
		}
		return to, n, u.publish(c, b, n)
	}
	evs, err := u.log.Read(sent, u.opts.BatchEvents, u.opts.BatchBytes)
	if err != nil {
		return 0, 0, fmt.Errorf("read outbox: %w", err)
	}
	if len(evs) == 0 {
		return 0, 0, nil
	}
	to = evs[len(evs)-1].Seq
	return to, len(evs), u.publishBatch(c, sent+1, to, evs, false)
}

// sendPriority publishes, each in a batch of its own, the priority events
// that session has not sent yet, and forgets those the hub has acked. The
// hub acks only its contiguous high-water mark, so an alarm ahead of a
// backlog stays here, and is resent by each new session, until the
// backlog before it has drained.
func (u *Uplink) sendPriority(c mqtt.Client, session, acked uint64) error {
	u.prioMu.Lock()
	var due []event.Event
	keep := u.prio[:0]
	for _, p := range u.prio {
		if p.ev.Seq <= acked {
			continue
		}
		if p.sent != session {
			p.sent = session
			due = append(due, p.ev)
		}
		keep = append(keep, p)
	}
	u.prio = keep
	u.prioMu.Unlock()
	for _, ev := range due {
		if err := u.publishBatch(c, ev.Seq, ev.Seq, []event.Event{ev}, true); err != nil {
			return err
		}
		u.count(func(s *Stats) { s.Priority++ })
	}
	return nil
}

func (u *Uplink) publishBatch(c mqtt.Client, from, to uint64, evs []event.Event, priority bool) error {
	for i := range evs {
		evs[i].Device = "" // the topic names the device once
	}
	b, err := wire.NewBatch(from, to, evs, u.opts.Compress, u.log.Clock().Now())
	if err != nil {
		return err
	}
	b.Priority = priority
	return u.publish(c, b, len(evs))
}

// publish sends a batch of events events and counts it.
func (u *Uplink) publish(c mqtt.Client, b *wire.Batch, events int) error {
	n, err := u.publishUp(c, wire.Up{Batch: b})
	if err != nil {
		return err
	}
	u.count(func(s *Stats) {
		s.Batches++
		s.Events += uint64(events)
		s.Bytes += uint64(n)
	})
	return nil
}

// refused reports whether a connect error is the broker refusing the
// login (CONNACK "not authorised" or "bad user name or password").
func refused(err error) bool {
	return errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword)
}

func waitToken(ctx context.Context, t mqtt.Token, timeout time.Duration) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return errors.New("timed out")
	}
}
