package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const onlineRate = 50 // events per second

// online is scenario 4: a kiosk's 201 until the event is visible in the
// hub's API, at a steady 50 events/s.
func online(ctx context.Context, e *runEnv) error {
	brokers := []string{"embedded"}
	if e.cfg.Mosquitto != "" {
		brokers = append(brokers, "mosquitto")
	}
	dur := e.pickDur(10*time.Second, 60*time.Second)
	for _, br := range brokers {
		o, err := e.onlineRun(ctx, br, dur)
		if err != nil {
			return fmt.Errorf("%s: %w", br, err)
		}
		p50, p99 := o.lat.pct(0.5), o.lat.pct(0.99)
		sc := "4 online latency (" + br + ")"
		e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("201 at the edge → visible in the hub API, %d ev/s, %d events", onlineRate, len(o.lat)),
			Value: "p50 " + fmtMs(p50) + " / p99 " + fmtMs(p99), Target: "p99 < 100 ms", Verdict: verdict(p99 < 100*time.Millisecond)})
		per := func(d time.Duration) float64 { return us(d) / float64(max(len(o.lat), 1)) }
		e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("CPU µs per event at %d ev/s: edge / hub (background work included; the hub's also answers the poller every ms)", onlineRate),
			Value: fmt.Sprintf("%.1f / %.1f", per(o.edgeCPU), per(o.hubCPU)), Verdict: Info})
	}
	e.res.note("**4 online latency**: a hub and a gateway edge online; 4 clients post check-ins and access events paced to %d/s overall for %v. "+
		"A poller asks the hub `GET /api/v1/events?device=…&after=…` (admin token from `<hub data>/admin.token`) back to back, about every "+
		"millisecond; an event's latency is from the moment its 201 reached the client to the first poll that returned it (so it includes "+
		"up to one poll of delay).", onlineRate, dur)
	return nil
}

// onlineResult is one online run: latencies and each process's CPU over
// the load.
type onlineResult struct {
	lat             latencies
	edgeCPU, hubCPU time.Duration
}

func (e *runEnv) onlineRun(ctx context.Context, broker string, dur time.Duration) (*onlineResult, error) {
	dir := e.dir("online-" + broker)
	var brokerURL string
	if broker == "mosquitto" {
		url, mosq, err := e.startMosquitto(ctx, dir)
		if err != nil {
			return nil, err
		}
		defer e.stopAll(mosq)
		brokerURL = url
	}
	h, err := e.startHub(ctx, dir, brokerURL)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(h.proc)
	const id = "gw-online"
	ed, err := e.startEdge(ctx, dir, id, filepath.Join(dir, "edge"), h.mqtt)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(ed.proc)
	if err := poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		s, err := ed.sync(ctx)
		return err == nil && s.Connected, err
	}, ed.proc, h.proc); err != nil {
		return nil, fmt.Errorf("edge never connected: %w", err)
	}

	// The poller records when each seq first shows at the hub.
	var (
		mu   sync.Mutex
		seen = map[uint64]time.Time{}
	)
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var after uint64
		for pctx.Err() == nil {
			var evs []struct {
				Seq uint64 `json:"seq"`
			}
			url := fmt.Sprintf("%s/api/v1/events?device=%s&after=%d&limit=1000", h.url, id, after)
			if err := getJSON(pctx, url, h.token, &evs); err != nil {
				// 404 until the hub first hears of the device.
				time.Sleep(time.Millisecond)
				continue
			}
			now := time.Now()
			mu.Lock()
			for _, ev := range evs {
				if _, ok := seen[ev.Seq]; !ok {
					seen[ev.Seq] = now
				}
			}
			// Ask again from the first gap: the hub commits batches of one
			// device in parallel groups, so seqs may show out of order.
			for _, ok := seen[after+1]; ok; _, ok = seen[after+1] {
				after++
			}
			mu.Unlock()
			time.Sleep(500 * time.Microsecond)
		}
	}()
	e0, err1 := ed.cpu()
	h0, err2 := h.cpu()
	if err := errors.Join(err1, err2); err != nil {
		stop()
		wg.Wait()
		return nil, err
	}
	load, err := httpLoad(ctx, ed.url, 4, dur, onlineRate)
	if err != nil {
		stop()
		wg.Wait()
		return nil, err
	}
	last := load.seqs[len(load.seqs)-1].seq
	err = poll(ctx, 30*time.Second, 5*time.Millisecond, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		_, ok := seen[last]
		return ok, fmt.Errorf("hub does not show seq %d", last)
	}, ed.proc, h.proc)
	e1, err1 := ed.cpu()
	h1, err2 := h.cpu()
	stop()
	wg.Wait()
	if err := errors.Join(err, err1, err2); err != nil {
		return nil, err
	}
	var lat latencies
	for _, s := range load.seqs {
		at, ok := seen[s.seq]
		if !ok {
			return nil, fmt.Errorf("seq %d answered 201 but never seen at the hub", s.seq)
		}
		lat = append(lat, max(at.Sub(s.at), 0))
		if d := at.Sub(s.at); d > 20*time.Millisecond && os.Getenv("BENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "slow seq %d at %s: %v\n", s.seq, s.at.Format("05.000"), d)
		}
	}
	lat.sort()
	return &onlineResult{lat: lat, edgeCPU: e1 - e0, hubCPU: h1 - h0}, nil
}
