package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/outbox"
	"linli/edge/store"
	"linli/shared/event"
	"linli/shared/kv"
)

const catchupDevice = "gw-catchup"

// catchupTarget is the least share of baseline (a), raw synced Badger
// batches of the same events, a catch-up must reach on either broker.
const catchupTarget = 0.70

// hubCPUTarget is the most CPU the hub may spend per event of a
// catch-up, by broker: two thirds of what it spent before its ingest was
// profiled and cut (3.2 µs embedded, 3.4 µs behind Mosquitto, on the
// project's 2-core machine).
var hubCPUTarget = map[string]time.Duration{
	"embedded":  2133 * time.Nanosecond,
	"mosquitto": 2267 * time.Nanosecond,
}

// backlog is a prefilled edge data dir and the events it holds.
type backlog struct {
	dir       string
	events    []event.Event // as stored, Device set
	jsonBytes int64         // the same events as JSON, one document each
	took      time.Duration
}

// prefill writes n events of the mix into a fresh outbox in dir, the way
// an edge records them during an outage (concurrent appends, group
// commits), then reads them back as the uplink will.
func prefill(ctx context.Context, dir string, n int, log *slog.Logger) (*backlog, error) {
	start := time.Now()
	st, err := store.Open(store.Options{Dir: dir, Profile: kv.Small, GCInterval: time.Hour, Logger: log})
	if err != nil {
		return nil, err
	}
	l, err := outbox.Open(st.DB(), outbox.Options{Device: catchupDevice, Retention: 24 * time.Hour,
		RetentionInterval: time.Hour, Logger: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if _, err := l.Append(ctx, mixBody(catchupDevice, i)); err != nil {
					errMu.Lock()
					first = err
					errMu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	b := &backlog{dir: dir, events: make([]event.Event, 0, n)}
	for first == nil && len(b.events) < n {
		var evs []event.Event
		evs, first = l.Read(uint64(len(b.events)), 4096, 1<<30)
		if first == nil && len(evs) == 0 {
			first = fmt.Errorf("outbox holds %d events, want %d", len(b.events), n)
		}
		b.events = append(b.events, evs...)
	}
	if err := l.Close(); err != nil && first == nil {
		first = err
	}
	if err := st.Close(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return nil, fmt.Errorf("prefill: %w", first)
	}
	for i := range b.events {
		js, err := eventJSON(&b.events[i])
		if err != nil {
			return nil, err
		}
		b.jsonBytes += int64(len(js))
	}
	b.took = time.Since(start)
	return b, nil
}

// catchUp is scenarios 2, 3 and 5: an edge holding a backlog drains it to
// the hub through the embedded broker and through Mosquitto.
func catchUp(ctx context.Context, e *runEnv) error {
	n := e.pick(200_000, 1_000_000)
	dir := e.dir("catchup")
	bl, err := prefill(ctx, filepath.Join(dir, "template"), n, e.log.With("component", "prefill"))
	if err != nil {
		return err
	}
	e.log.Info("backlog prefilled", "events", n, "took", bl.took.Round(time.Millisecond))
	brokers := []string{"embedded"}
	if e.cfg.Mosquitto != "" {
		brokers = append(brokers, "mosquitto")
	}
	rounds := e.cfg.Pairs // each run is a pair: (a) before it, the drain, (b) after it
	var wire []float64
	for _, br := range brokers {
		var runs []*drainResult
		for range rounds {
			r, err := e.drain(ctx, dir, bl, br)
			if err != nil {
				return fmt.Errorf("%s: %w", br, err)
			}
			runs = append(runs, r)
		}
		// Report the median pair of each baseline, with the spread: the
		// machine's other load moves every figure between runs.
		var pa, pb pairs
		for _, x := range runs {
			pa.add(x.limit.rate, x.rate)
			pb.add(x.naive.rate, x.rate)
		}
		ia, ib := pa.medianPair(), pb.medianPair()
		sc := "2 catch-up (" + br + ")"
		e.res.add(pa.judged(Row{Scenario: sc, Figure: fmt.Sprintf("%s events drained to the hub, end to end; the median pair", groupThousands(int64(n))),
			Value: fmtRate(pa.scen[ia]), Baseline: fmtRate(pa.base[ia]) + " (a: Badger, synced batches of 500)", Target: "≥ 70 %"},
			fmtPct, func(r float64) bool { return r >= catchupTarget }))
		e.res.add(pb.judged(Row{Scenario: sc, Figure: "same runs, against a naive client; the median pair", Value: fmtRate(pb.scen[ib]),
			Baseline: fmtRate(pb.base[ib]) + " (b: JSON per event, QoS 1, wait for PUBACK)", Target: "≥ 10×"},
			fmtRatio, func(r float64) bool { return r >= 10 }))
		slices.SortFunc(runs, func(x, y *drainResult) int { return cmp.Compare(x.rate/x.limit.rate, y.rate/y.limit.rate) })
		r := runs[(len(runs)-1)/2] // the median run by its ratio to (a), for the figures below
		e.res.add(Row{Scenario: sc, Figure: "hub only: first to last commit; resends", Value: fmtRate(r.hubRate) + fmt.Sprintf("; %d resends", r.resends),
			Verdict: Info})
		cpu := fmt.Sprintf("%.1f / %.1f", us(r.edgeCPU), us(r.hubCPU))
		if r.brokerCPU > 0 {
			cpu += fmt.Sprintf(" / %.1f", us(r.brokerCPU))
		}
		e.res.add(Row{Scenario: sc, Figure: "hub group commits: events per commit; time in Badger commit",
			Value: fmt.Sprintf("%.0f; %s", float64(n)/r.hubCommits, fmtPct(r.hubCommitBusy)), Verdict: Info})
		e.res.add(Row{Scenario: sc, Figure: "CPU µs per event: edge / hub" + map[bool]string{true: " / mosquitto"}[r.brokerCPU > 0],
			Value: cpu, Verdict: Info})
		hubCPU := make([]float64, len(runs))
		for i, x := range runs {
			hubCPU[i] = us(x.hubCPU)
		}
		limit := us(hubCPUTarget[br])
		e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("hub CPU µs per event, median of %d runs (min–max)", len(runs)),
			Value:  fmt.Sprintf("%.2f (%.2f–%.2f)", median(hubCPU), slices.Min(hubCPU), slices.Max(hubCPU)),
			Target: fmt.Sprintf("≤ %.1f", limit), Verdict: verdict(median(hubCPU) <= limit)})
		var edgePeak, hubPeak, edgeAnon, edgeFile uint64
		for _, x := range runs {
			edgePeak, hubPeak = max(edgePeak, x.edgePeak), max(hubPeak, x.hubPeak)
			edgeAnon, edgeFile = max(edgeAnon, x.edgeAnon), max(edgeFile, x.edgeFile)
		}
		e.res.add(Row{Scenario: "5 edge memory (" + br + ")", Figure: fmt.Sprintf("edge peak RSS (VmHWM), holding and draining %s events, highest of %d runs", groupThousands(int64(n)), len(runs)),
			Value: fmtMiB(edgePeak), Target: "≤ 64 MiB", Verdict: verdict(edgePeak <= 64<<20)})
		e.res.add(Row{Scenario: "5 edge memory (" + br + ")", Figure: "of which, sampled every 20 ms: anonymous (heap, stacks) / file-backed (Badger's mmapped tables and logs)",
			Value: fmtMiB(edgeAnon) + " / " + fmtMiB(edgeFile), Verdict: Info})
		e.res.add(Row{Scenario: "5 edge memory (" + br + ")", Figure: "hub peak RSS (VmHWM)", Value: fmtMiB(hubPeak), Verdict: Info})
		wire = append(wire, r.wirePerEvent)
	}
	jsonPer := float64(bl.jsonBytes) / float64(n)
	for i, br := range brokers {
		ratio := wire[i] / jsonPer
		e.res.add(Row{Scenario: "3 wire size (" + br + ")", Figure: "bytes per event on the wire, catch-up mix",
			Value: fmt.Sprintf("%.1f B", wire[i]), Baseline: fmt.Sprintf("%.1f B (same events as JSON)", jsonPer), Ratio: fmtPct(ratio),
			Target: "≤ 20 %", Verdict: verdict(ratio <= 0.20)})
	}
	e.res.note("**2 catch-up**: %s events of the mix (per 20: 8 door decisions, 5 sensor readings, 4 check-ins/outs, a report, "+
		"a \"me too\", a rating) are appended to a gateway's outbox by the harness (edge/outbox, group commits) while no edge runs, "+
		"taking %v; each run copies that data dir, starts a hub (`linli-hub`, embedded broker, or `--broker` to Mosquitto with "+
		"`configs/mosquitto.conf` on a free port), then the edge (`linli-edge --role gateway`, default batches of ≤ 1,000 events / 256 KiB, "+
		"zstd, 64 in flight). Each broker gets %d runs, each a pair with each baseline ((a) just before, (b) just after); the table shows "+
		"the median pair's figures and ratio and the spread of the ratios; the rows below them are of the median run by its ratio to (a). The figure is events / (time from starting the edge process until its `GET /api/v1/sync` shows every event acked "+
		"by the hub, i.e. committed on the hub's disk); the hub's record of the device is checked to hold every event exactly once. "+
		"Baseline (a), measured just before each run: the harness writes the same events (hub keys, hub's `server` store profile, SyncWrites on) "+
		"into a fresh Badger, one synced transaction per 500 events, serially. Baseline (b), after each run: a paho client publishes "+
		"the events one JSON document each (as the hub API renders them) at QoS 1, waiting for each PUBACK, to a broker with one QoS 1 "+
		"subscriber that discards them — Mosquitto with the same config, or for the embedded case a mochi-mqtt broker with the hub's "+
		"capabilities run in the harness (the hub's own broker lets no client subscribe to up topics); it runs %v or %s events, whichever comes first.",
		groupThousands(int64(n)), bl.took.Round(time.Second), rounds, naiveDur(e), groupThousands(int64(naiveMax)))
	e.res.note("**3 wire size**: MQTT payload bytes the edge published for batches (its `linli_edge_uplink_bytes_total`, resends included) " +
		"divided by the events acked, against the mean size of the same events as JSON documents (`device`, `seq`, `kind`, `hlc`, `body`, " +
		"as `GET /api/v1/events` renders them); MQTT headers and topics are left out on both sides.")
	e.res.note("**5 edge memory**: VmHWM of the edge process (from /proc) read after the backlog has drained: the peak over opening the store "+
		"with the whole backlog and sending it; the anonymous and file-backed parts (RssAnon, RssFile) are sampled every 20 ms. Small store profile "+
		"(`--profile small`), which comes with a %d MiB soft Go heap limit the edge sets itself; the harness sets no GOMEMLIMIT.", kv.Small.MemoryLimit()>>20)
	return nil
}

// drainResult is one catch-up run.
type drainResult struct {
	rate, hubRate      float64
	limit, naive       *baseline
	edgePeak, hubPeak  uint64
	wirePerEvent       float64
	resends            int64
	edgeCPU, hubCPU    time.Duration // per event
	brokerCPU          time.Duration // per event, Mosquitto only
	edgeAnon, edgeFile uint64        // peaks of anonymous and file-backed RSS (sampled)
	hubCommits         float64
	hubCommitBusy      float64 // share of the drain the hub's committer spent in Commit
}

func (e *runEnv) drain(ctx context.Context, dir string, bl *backlog, broker string) (*drainResult, error) {
	n := len(bl.events)
	e.seq++
	run := filepath.Join(dir, fmt.Sprintf("%s-%d", broker, e.seq))
	limit, err := batchedBaseline(filepath.Join(run, "baseline-a"), bl.events, 500)
	if err != nil {
		return nil, fmt.Errorf("baseline a: %w", err)
	}
	data := filepath.Join(run, "edge")
	if out, err := exec.CommandContext(ctx, "cp", "-a", bl.dir, data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy backlog: %v: %s", err, out)
	}
	var brokerURL string
	var mosq *proc
	if broker == "mosquitto" {
		if brokerURL, mosq, err = e.startMosquitto(ctx, run); err != nil {
			return nil, err
		}
		defer e.stopAll(mosq)
	}
	h, err := e.startHub(ctx, run, brokerURL)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(h.proc)
	hubCPU0, err := h.cpu()
	if err != nil {
		return nil, err
	}
	var mosqCPU0 time.Duration
	if mosq != nil {
		if mosqCPU0, err = mosq.cpu(); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	ed, err := e.startEdge(ctx, run, catchupDevice, data, h.mqtt)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(ed.proc)
	mem := watchMemory(ed.proc, 20*time.Millisecond)
	var first time.Time
	err = poll(ctx, e.pickDur(5*time.Minute, 20*time.Minute), 10*time.Millisecond, func() (bool, error) {
		s, err := ed.sync(ctx)
		if err != nil {
			return false, err
		}
		if first.IsZero() && s.AckedSeq > 0 {
			first = time.Now()
		}
		return s.AckedSeq >= uint64(n) && s.Pending == 0, nil
	}, ed.proc, h.proc)
	if err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	took := time.Since(start)
	mem.end()
	edgeCPU, err1 := ed.cpu()
	hubCPU, err2 := h.cpu()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	r := &drainResult{edgeCPU: edgeCPU / time.Duration(n), hubCPU: (hubCPU - hubCPU0) / time.Duration(n), rate: float64(n) / took.Seconds(), hubRate: float64(n) / time.Since(first).Seconds(), limit: limit}
	if r.edgePeak, _, err = ed.memory(); err != nil {
		return nil, err
	}
	r.edgeAnon, r.edgeFile = mem.anon, mem.file
	if r.hubPeak, _, err = h.memory(); err != nil {
		return nil, err
	}
	bytes, err := metric(ctx, ed.url, "linli_edge_uplink_bytes_total")
	if err != nil {
		return nil, err
	}
	resends, err := metric(ctx, ed.url, "linli_edge_uplink_resends_total")
	if err != nil {
		return nil, err
	}
	r.resends = int64(resends)
	if mosq != nil {
		c, err := mosq.cpu()
		if err != nil {
			return nil, err
		}
		r.brokerCPU = (c - mosqCPU0) / time.Duration(n)
	}
	r.wirePerEvent = bytes / float64(n)
	if r.hubCommits, err = metric(ctx, h.url, "linli_hub_commits_total"); err != nil {
		return nil, err
	}
	commitSecs, err := metric(ctx, h.url, "linli_hub_commit_seconds_total")
	if err != nil {
		return nil, err
	}
	r.hubCommitBusy = commitSecs / took.Seconds()
	devs, err := h.devices(ctx)
	if err != nil {
		return nil, err
	}
	if d := devs[catchupDevice]; d.Received != uint64(n) || d.AckedSeq != uint64(n) {
		return nil, fmt.Errorf("hub holds %d events of %s acked to %d, want %d", d.Received, catchupDevice, d.AckedSeq, n)
	}
	e.stopAll(ed.proc, h.proc)
	if r.naive, err = e.naiveBaseline(ctx, run, bl.events, brokerURL); err != nil {
		return nil, fmt.Errorf("baseline b: %w", err)
	}
	return r, nil
}

// batchedBaseline writes events into a fresh Badger with the hub's store
// profile, one synced transaction per batch events, serially: the least
// the hub must do to hold them.
func batchedBaseline(dir string, events []event.Event, batch int) (*baseline, error) {
	db, err := kv.OpenWith(kv.Options(dir, kv.Server, slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	// Encoding is work the hub does too (it stores each event without its
	// device), so it is inside the timing.
	start := time.Now()
	for i := 0; i < len(events); i += batch {
		part := events[i:min(i+batch, len(events))]
		err := db.Update(func(txn *badger.Txn) error {
			for j := range part {
				ev := part[j]
				key := kv.Key("e/", []byte(benchSite+"/"+ev.Device+"/"), kv.U64(ev.Seq))
				ev.Device = ""
				val, err := ev.Encode()
				if err != nil {
					return err
				}
				if err := txn.Set(key, val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	took := time.Since(start)
	if err := db.Close(); err != nil {
		return nil, err
	}
	return &baseline{n: len(events), took: took, rate: float64(len(events)) / took.Seconds()}, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
