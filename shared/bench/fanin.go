package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/test/fleet"
	"linli/shared/wire"
)

// Fan-in shape: 1,000 edges over 20 sites, each sending its events in
// batches of faninBatch with faninWindow batches in flight.
const (
	faninEdges  = 1000
	faninSites  = 20
	faninBatch  = 100
	faninWindow = 4
)

// fanIn is scenario 6: 1,000 simulated edges, each its own MQTT session,
// device id and seq, publish proper (unsigned) wire batches concurrently
// to one hub.
func fanIn(ctx context.Context, e *runEnv) error {
	r, err := e.fanInRun(ctx, e.dir("fanin"), nil, nil)
	if err != nil {
		return err
	}
	sc := "6 hub fan-in"
	e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("%d edges × %s events, merged and acked", faninEdges, groupThousands(int64(r.perEdge))),
		Value: fmtRate(r.rate), Target: "≥ 50,000 ev/s", Verdict: verdict(r.rate >= 50_000)})
	e.res.add(Row{Scenario: sc, Figure: "ack latency p50 / p99 (batch published → hub's ack)", Value: fmtMs(r.lat.pct(0.5)) + " / " + fmtMs(r.lat.pct(0.99)), Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: "hub peak RSS (VmHWM); hub CPU µs per event", Value: fmt.Sprintf("%s; %.1f µs", fmtMiB(r.peak), us(r.hubCPU)), Verdict: Info})
	e.res.note("**6 hub fan-in**: one hub (embedded broker) and, in the harness process, %d minimal MQTT 3.1.1 clients (one TCP session each, "+
		"client id = device id, %d sites) that each say hello, wait for the hub's answer, then send %s events of the mix as zstd CBOR batches "+
		"of %d with %d in flight, unsigned (unenrolled devices on a loopback hub), advancing on the hub's end-to-end acks. Batches are encoded "+
		"before the clock starts; the clock runs from the first batch to the last ack. Each device's record at the hub is checked to hold every event.",
		faninEdges, faninSites, groupThousands(int64(r.perEdge)), faninBatch, faninWindow)
	return nil
}

// faninResult is one fan-in run.
type faninResult struct {
	perEdge int
	rate    float64
	hubCPU  time.Duration // per event
	peak    uint64        // hub VmHWM
	lat     latencies     // sorted
	hub     *hub          // stopped; its data dir stays
}

// faninEvents are the events fan-in edge i sends (Device left out, as in
// any batch), from the mix at an offset of its own, seqs 1…perEdge.
func faninEvents(i, perEdge int, start hlc.Timestamp) ([]event.Event, error) {
	id := faninID(i)
	evs := make([]event.Event, perEdge)
	for j := range evs {
		ev, err := event.NewEvent("", uint64(j+1), start+hlc.Timestamp(j), mixBody(id, j+i*37))
		if err != nil {
			return nil, err
		}
		evs[j] = ev
	}
	return evs, nil
}

func faninID(i int) string   { return fmt.Sprintf("fan-%04d", i) }
func faninSite(i int) string { return fmt.Sprintf("site-%02d", i%faninSites) }

// fanInRun runs the fan-in once against a hub started in dir with extra
// flags (a store, say), and stops the hub. mark, when set, is called as
// the clock starts (true) and stops (false).
func (e *runEnv) fanInRun(ctx context.Context, dir string, extra []string, mark func(start bool)) (*faninResult, error) {
	if mark == nil {
		mark = func(bool) {}
	}
	perEdge := e.pick(200, 1000)
	h, err := e.startHub(ctx, dir, "", extra...)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(h.proc)
	addr := strings.TrimPrefix(h.mqtt, "tcp://")

	// Encode every edge's batches before the clock starts: the load
	// process should cost the hub as little CPU as it can.
	start := hlc.FromTime(time.Now())
	sims := make([]*simEdge, faninEdges)
	for i := range sims {
		s := &simEdge{id: faninID(i), site: faninSite(i), acks: make(chan wire.Ack, 16)}
		evs, err := faninEvents(i, perEdge, start)
		if err != nil {
			return nil, err
		}
		for j := 0; j < len(evs); j += faninBatch {
			part := evs[j:min(j+faninBatch, len(evs))]
			b, err := wire.NewBatch(part[0].Seq, part[len(part)-1].Seq, part, true, start)
			if err != nil {
				return nil, err
			}
			payload, err := wire.Encode(wire.Up{Batch: b})
			if err != nil {
				return nil, err
			}
			s.batches = append(s.batches, simBatch{to: b.To, payload: payload})
		}
		sims[i] = s
	}
	hubCPU0, err := h.cpu()
	if err != nil {
		return nil, err
	}
	// Connect and say hello, in parallel but not all at once.
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	errs := make([]error, len(sims))
	for i, s := range sims {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = s.connect(ctx, addr)
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range sims {
			s.close()
		}
	}()
	if err := fleet.FirstErrs(errs); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	mark(true)
	t0 := time.Now()
	for i, s := range sims {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.stream(ctx, e.pickDur(2*time.Minute, 10*time.Minute)) }()
	}
	wg.Wait()
	took := time.Since(t0)
	mark(false)
	if err := fleet.FirstErrs(errs); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	total := faninEdges * perEdge
	hubCPU1, err := h.cpu()
	if err != nil {
		return nil, err
	}
	peak, _, err := h.memory()
	if err != nil {
		return nil, err
	}
	devs, err := h.devices(ctx)
	if err != nil {
		return nil, err
	}
	var lat latencies
	for _, s := range sims {
		lat = append(lat, s.lat...)
		if d := devs[s.id]; d.Received != uint64(perEdge) || d.AckedSeq != uint64(perEdge) {
			return nil, fmt.Errorf("hub holds %d events of %s acked to %d, want %d", d.Received, s.id, d.AckedSeq, perEdge)
		}
	}
	lat.sort()
	return &faninResult{perEdge: perEdge, rate: float64(total) / took.Seconds(), hubCPU: (hubCPU1 - hubCPU0) / time.Duration(total),
		peak: peak, lat: lat, hub: h}, nil
}

type simBatch struct {
	to      uint64
	payload []byte
}

// simEdge is one simulated edge: a bare MQTT session that publishes
// pre-encoded batches and reads the hub's acks.
type simEdge struct {
	id, site string
	batches  []simBatch
	conn     net.Conn
	w        *bufio.Writer
	wmu      sync.Mutex
	nextID   atomic.Uint32
	acks     chan wire.Ack
	readErr  atomic.Pointer[error]
	done     chan struct{}
	lat      latencies
}

func (s *simEdge) write(p packets.ControlPacket) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := p.Write(s.w); err != nil {
		return err
	}
	return s.w.Flush()
}

func (s *simEdge) publish(topic string, payload []byte) error {
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.Qos = 1
	p.TopicName = topic
	p.MessageID = uint16(s.nextID.Add(1)%65535 + 1)
	p.Payload = payload
	return s.write(p)
}

func (s *simEdge) connect(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	s.conn, s.w = c, bufio.NewWriterSize(c, 32<<10)
	r := bufio.NewReaderSize(c, 8<<10)
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.ClientIdentifier, cp.CleanSession, cp.Keepalive = s.id, true, 120
	if err := s.write(cp); err != nil {
		return err
	}
	p, err := packets.ReadPacket(r)
	if err != nil {
		return fmt.Errorf("%s: connack: %w", s.id, err)
	}
	if ca, ok := p.(*packets.ConnackPacket); !ok || ca.ReturnCode != 0 {
		return fmt.Errorf("%s: refused: %v", s.id, p)
	}
	sub := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sub.MessageID, sub.Topics, sub.Qoss = 1, []string{wire.Topic(s.site, s.id, wire.LeafAck)}, []byte{1}
	if err := s.write(sub); err != nil {
		return err
	}
	if p, err = packets.ReadPacket(r); err != nil {
		return fmt.Errorf("%s: suback: %w", s.id, err)
	}
	if _, ok := p.(*packets.SubackPacket); !ok {
		return fmt.Errorf("%s: want suback, got %v", s.id, p)
	}
	s.done = make(chan struct{})
	go s.read(r)
	hello, err := wire.Encode(wire.Up{Hello: &wire.Hello{Role: "gateway", Version: "bench", LastSeq: s.batches[len(s.batches)-1].to,
		Clock: hlc.FromTime(time.Now()), Pending: s.batches[len(s.batches)-1].to}})
	if err != nil {
		return err
	}
	if err := s.publish(wire.Topic(s.site, s.id, wire.LeafUp), hello); err != nil {
		return err
	}
	for {
		select {
		case a := <-s.acks:
			if a.Hello {
				return nil
			}
		case <-s.done:
			return fmt.Errorf("%s: %v", s.id, *s.readErr.Load())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s: no answer to hello", s.id)
		}
	}
}

// read handles what the broker sends: PUBACKs (ignored: only the hub's
// ack counts) and the hub's acks, each PUBACKed.
func (s *simEdge) read(r *bufio.Reader) {
	defer close(s.done)
	for {
		p, err := packets.ReadPacket(r)
		if err != nil {
			s.readErr.Store(&err)
			return
		}
		pub, ok := p.(*packets.PublishPacket)
		if !ok {
			continue
		}
		if pub.Qos > 0 {
			pa := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
			pa.MessageID = pub.MessageID
			if err := s.write(pa); err != nil {
				s.readErr.Store(&err)
				return
			}
		}
		payload := pub.Payload
		if identity.IsSigned(payload) {
			// The load generator stands in for many edges and holds no
			// hub key: it reads the hub's signed acks unverified.
			if payload, err = identity.Payload(payload); err != nil {
				s.readErr.Store(&err)
				return
			}
		}
		a, err := wire.DecodeAck(payload)
		if err != nil {
			s.readErr.Store(&err)
			return
		}
		select {
		case s.acks <- a:
		default: // the sender only needs the newest
			select {
			case <-s.acks:
			default:
			}
			s.acks <- a
		}
	}
}

// stream sends every batch with a window in flight and waits for the ack
// of the last.
func (s *simEdge) stream(ctx context.Context, timeout time.Duration) error {
	topic := wire.Topic(s.site, s.id, wire.LeafUp)
	last := s.batches[len(s.batches)-1].to
	sentAt := make([]time.Time, len(s.batches))
	next, acked, ackedIdx := 0, uint64(0), 0
	deadline := time.After(timeout)
	for acked < last {
		for next < len(s.batches) && next-ackedIdx < faninWindow {
			sentAt[next] = time.Now()
			if err := s.publish(topic, s.batches[next].payload); err != nil {
				return err
			}
			next++
		}
		select {
		case a := <-s.acks:
			now := time.Now()
			for ackedIdx < len(s.batches) && s.batches[ackedIdx].to <= a.Acked {
				s.lat = append(s.lat, now.Sub(sentAt[ackedIdx]))
				ackedIdx++
			}
			acked = max(acked, a.Acked)
		case <-s.done:
			return fmt.Errorf("%s: %v", s.id, *s.readErr.Load())
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%s: acked %d of %d within %v", s.id, acked, last, timeout)
		}
	}
	return nil
}

func (s *simEdge) close() {
	if s.conn == nil {
		return
	}
	s.wmu.Lock()
	if err := packets.NewControlPacket(packets.Disconnect).Write(s.w); err == nil {
		_ = s.w.Flush() // best effort: the connection closes right after
	}
	s.wmu.Unlock()
	s.conn.Close()
	if s.done != nil {
		<-s.done
	}
}
