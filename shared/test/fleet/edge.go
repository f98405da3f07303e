package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"linli/edge/enroll"
	"linli/shared/accesslist"
	"linli/shared/backoff"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/wire"
)

// Edge is one simulated edge: its identity, the events it wrote (their
// write times; bodies are made again from the seq when sent), and its
// cursors.
type Edge struct {
	ID, Site string
	n        int
	f        *Fleet
	ident    *enroll.Identity
	sig      chan struct{} // something to send, or an ack came

	mu       sync.Mutex
	written  []time.Time // written[s-1] is when seq s was written
	sent     uint64      // highest seq published this session
	acked    uint64      // the hub's ack
	inflight []uint64    // the last seq of each batch in flight
	ackedAt  time.Time   // when the ack last moved, or a batch went out with none in flight
	resent   uint64
	hello    bool // the hub answered this session's hello

	connected   atomic.Bool
	sessions    atomic.Uint64
	connectErrs atomic.Uint64
	acksRefused atomic.Uint64
	batches     atomic.Uint64
}

// Cursors are the events written and acked so far.
func (e *Edge) Cursors() (written, acked uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return uint64(len(e.written)), e.acked
}

// Sessions counts the sessions whose hello the hub answered.
func (e *Edge) Sessions() uint64 { return e.sessions.Load() }

func (e *Edge) write(at time.Time) {
	e.mu.Lock()
	e.written = append(e.written, at)
	e.mu.Unlock()
	e.signal()
}

func (e *Edge) signal() {
	select {
	case e.sig <- struct{}{}:
	default:
	}
}

// Body is event seq of edge n: of every four, two door decisions, a
// temperature reading and a check-in, each naming the edge and the seq so
// that a test can tell it from any other.
func Body(n int, seq uint64) event.Body {
	s := strconv.FormatUint(seq, 10)
	switch seq % 4 {
	case 0, 1:
		card := accesslist.Pseudonym(accesslist.Hash(cardKey, "C"+strconv.Itoa(n)+"-"+s))
		return &event.Access{Door: "B1-main", Credential: card, Result: "granted", Building: "B1"}
	case 2:
		return &event.Reading{Sensor: "B1-t-" + strconv.Itoa(n%8), Type: "temperature", Value: 18 + float64(seq%90)/10, Building: "B1"}
	default:
		return &event.Checkin{Resident: "R" + strconv.Itoa(n) + "-" + s, Activity: "A1", Action: "in", Status: event.StatusRecorded}
	}
}

// cardKey is the simulated gateways' key for card pseudonyms.
var cardKey = []byte("linli-fleet-card-key-0123456789ab")

// run keeps a session up until ctx ends, reconnecting with the uplink's
// capped, jittered backoff.
func (e *Edge) run(ctx context.Context) {
	c := e.f.cfg
	bo := backoff.Backoff{Min: c.BackoffMin, Max: c.BackoffMax}
	for ctx.Err() == nil {
		helloed, err := e.session(ctx)
		e.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if helloed {
			bo.Reset()
		}
		d := bo.Next()
		c.Log.Debug("fleet edge reconnecting", "edge", e.ID, "err", err, "in", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// session connects, says hello and streams until the connection is lost
// or ctx ends; helloed says whether the hub answered the hello.
func (e *Edge) session(ctx context.Context) (helloed bool, err error) {
	c := e.f.cfg
	lost := make(chan error, 1)
	co := mqtt.NewClientOptions().AddBroker(c.Broker).
		SetClientID(e.ID).SetUsername(e.ident.MQTTUsername).SetPassword(e.ident.MQTTPassword).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetProtocolVersion(4).SetKeepAlive(c.KeepAlive).SetPingTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	cl := mqtt.NewClient(co)
	if err := wait(ctx, cl.Connect(), 15*time.Second); err != nil {
		e.connectErrs.Add(1)
		cl.Disconnect(0)
		return false, fmt.Errorf("connect: %w", err)
	}
	defer cl.Disconnect(0)
	if err := wait(ctx, cl.Subscribe(wire.Topic(e.Site, e.ID, wire.LeafAck), 1, e.onAck), 10*time.Second); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	up := wire.Topic(e.Site, e.ID, wire.LeafUp)
	e.mu.Lock()
	e.hello = false
	e.mu.Unlock()
	for attempt := 0; attempt < 3 && !helloed; attempt++ {
		e.mu.Lock()
		last, acked := uint64(len(e.written)), e.acked
		e.mu.Unlock()
		h := &wire.Hello{Role: "gateway", Version: "fleet", LastSeq: last, AckedSeq: acked,
			Clock: hlc.FromTime(time.Now()), Pending: last - acked}
		if err := e.publish(cl, up, wire.Up{Hello: h}); err != nil {
			return false, err
		}
		timer := time.NewTimer(c.AckTimeout)
		for !helloed {
			select {
			case <-ctx.Done():
				timer.Stop()
				return false, ctx.Err()
			case err := <-lost:
				timer.Stop()
				return false, fmt.Errorf("connection lost during hello: %w", err)
			case <-timer.C:
			case <-e.sig:
				e.mu.Lock()
				helloed = e.hello
				e.mu.Unlock()
				continue
			}
			break
		}
		timer.Stop()
	}
	if !helloed {
		return false, errors.New("hub did not answer hello")
	}
	// Everything above the hub's ack goes again, from acked+1.
	e.mu.Lock()
	e.resent += e.sent - min(e.sent, e.acked)
	e.sent, e.inflight, e.ackedAt = e.acked, nil, time.Now()
	e.mu.Unlock()
	e.sessions.Add(1)
	e.connected.Store(true)
	check := time.NewTicker(c.AckTimeout / 4)
	defer check.Stop()
	for {
		if err := e.pump(cl, up); err != nil {
			return true, err
		}
		select {
		case <-ctx.Done():
			return true, nil
		case err := <-lost:
			return true, fmt.Errorf("connection lost: %w", err)
		case <-e.sig:
		case <-check.C:
			e.mu.Lock()
			if len(e.inflight) > 0 && time.Since(e.ackedAt) > c.AckTimeout {
				// No ack for a while: send the unacked events again (the
				// hub stores each once).
				e.resent += e.sent - e.acked
				e.sent, e.inflight, e.ackedAt = e.acked, nil, time.Now()
			}
			e.mu.Unlock()
		}
	}
}

// pump publishes what the window allows.
func (e *Edge) pump(cl mqtt.Client, topic string) error {
	c := e.f.cfg
	for {
		e.mu.Lock()
		last := uint64(len(e.written))
		if e.sent >= last || len(e.inflight) >= c.Window {
			e.mu.Unlock()
			return nil
		}
		from := e.sent + 1
		to := min(last, e.sent+uint64(c.Batch))
		at := e.written[from-1 : to]
		if len(e.inflight) == 0 {
			e.ackedAt = time.Now()
		}
		e.sent = to
		e.inflight = append(e.inflight, to)
		e.mu.Unlock()
		evs := make([]event.Event, 0, len(at))
		for i, t := range at {
			seq := from + uint64(i)
			ev, err := event.NewEvent("", seq, hlc.FromTime(t), Body(e.n, seq))
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		b, err := wire.NewBatch(from, to, evs, true, hlc.FromTime(time.Now()))
		if err != nil {
			return fmt.Errorf("batch %d-%d: %w", from, to, err)
		}
		if err := e.publish(cl, topic, wire.Up{Batch: b}); err != nil {
			return err
		}
		e.batches.Add(1)
	}
}

// publish encodes and signs an up message and hands it to paho; only the
// hub's ack counts, so the PUBACK is not waited for.
func (e *Edge) publish(cl mqtt.Client, topic string, up wire.Up) error {
	payload, err := wire.Encode(up)
	if err != nil {
		return fmt.Errorf("encode up message: %w", err)
	}
	if payload, err = identity.Sign(e.ident.Key, e.ident.ID, payload); err != nil {
		return fmt.Errorf("sign up message: %w", err)
	}
	cl.Publish(topic, 1, false, payload)
	return nil
}

// onAck checks the hub's signature and the ack's device and seq as the
// uplink does, then moves the cursor and records the latency of every
// event the ack covers for the first time.
func (e *Edge) onAck(_ mqtt.Client, m mqtt.Message) {
	payload, err := identity.Open(m.Payload(), e.ident.HubPub, e.ident.HubID)
	if err != nil {
		e.acksRefused.Add(1)
		return
	}
	a, err := wire.DecodeAck(payload)
	if err != nil || a.Device != e.ID || a.Identity != "" || a.Base != e.ident.SeqBase {
		e.acksRefused.Add(1)
		return
	}
	now := time.Now()
	e.mu.Lock()
	if a.Acked > uint64(len(e.written)) {
		e.mu.Unlock()
		e.acksRefused.Add(1)
		return
	}
	var lat []time.Duration
	for s := e.acked + 1; s <= a.Acked; s++ {
		lat = append(lat, now.Sub(e.written[s-1]))
	}
	if a.Acked > e.acked {
		e.acked, e.ackedAt = a.Acked, now
	}
	i := 0
	for i < len(e.inflight) && e.inflight[i] <= e.acked {
		i++
	}
	e.inflight = e.inflight[i:]
	if a.Hello {
		e.hello = true
	}
	e.mu.Unlock()
	if len(lat) > 0 {
		e.f.lat.add(lat...)
	}
	e.signal()
}

// wait waits for a paho token within timeout, or until ctx ends.
func wait(ctx context.Context, t mqtt.Token, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// postJSON POSTs body with a bearer token and decodes an answer of status
// want into out.
func postJSON(ctx context.Context, url, token string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}
