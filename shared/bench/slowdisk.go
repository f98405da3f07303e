package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
	"linli/shared/test/lazyfs"
	"linli/shared/test/process"
)

// slowDelays are the fsync latencies the slow-storage scenario injects: an
// SD card or eMMC's flush takes milliseconds, where this VM's takes ~0.1.
var slowDelays = []time.Duration{2 * time.Millisecond, 10 * time.Millisecond}

// slowDisk is scenario 1b: the edge ingest's load with the edge's data dir
// on a layer whose every fsync takes 2 or 10 ms (shared/test/lazyfs),
// against one synced transaction per event on the same layer.
func slowDisk(ctx context.Context, e *runEnv) error {
	if err := lazyfs.Available(); err != nil {
		e.notMeasured(err)
		return nil
	}
	for _, d := range slowDelays {
		if err := e.slowRun(ctx, d); err != nil {
			if errors.Is(err, errNoMount) {
				e.notMeasured(err)
				return nil
			}
			return fmt.Errorf("fsync %v: %w", d, err)
		}
	}
	e.res.note("**1b edge ingest on slow storage**: the edge's data dir is on a FUSE layer (shared/test/lazyfs, served by the harness) "+
		"whose every fsync or msync answers after a set delay — %s — and otherwise passes writes through to this VM's disk (concurrent "+
		"fsyncs wait side by side, as one cache flush serves them all). The same load as scenario 1 (%d clients, one request at a time "+
		"each). Baseline on the same layer: a child process of the harness appends the same kinds of events to a Badger with the edge's "+
		"options, one synced transaction (`db.Update`) per event, serially (a fresh process per slice, reopening the same store; only "+
		"the appends are timed). Baseline and load alternate in %d pairs; the ratio is the median of the pairs'. The group-commit bound is "+
		"clients ÷ fsync delay: every client's write waits for at least one fsync, so no edge can answer more. fsyncs are counted by the layer, all of them and those of the outbox journal's segments (`.jnl`), the one sync an answer waits for (Badger's, behind the answers, make up the rest).",
		fmtDelays(), ingestClients, e.cfg.Pairs)
	return nil
}

func fmtDelays() string {
	var s []string
	for _, d := range slowDelays {
		s = append(s, d.String())
	}
	return strings.Join(s, " or ")
}

var errNoMount = errors.New("cannot mount the slow-storage layer")

// notMeasured reports the scenario as not measured, with why.
func (e *runEnv) notMeasured(why error) {
	e.res.add(Row{Scenario: "1b edge ingest, slow storage", Figure: "durable writes with fsync delayed " + fmtDelays(),
		Value: "not measured: " + oneLine(why.Error()), Verdict: Info})
}

func (e *runEnv) slowRun(ctx context.Context, delay time.Duration) error {
	dir := e.dir(fmt.Sprintf("slowdisk-%s", delay))
	host, mnt := filepath.Join(dir, "host"), filepath.Join(dir, "mnt")
	for _, d := range []string{host, mnt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	fs, err := lazyfs.Mount(host, mnt)
	if err != nil {
		return fmt.Errorf("%w: %v", errNoMount, err)
	}
	defer func() {
		if err := fs.Unmount(); err != nil {
			e.log.Warn("unmount slow-storage layer", "err", err)
		}
	}()
	fs.SetFsyncDelay(delay)
	nowhere, err := process.FreeAddr()
	if err != nil {
		return err
	}
	ed, err := e.startEdge(ctx, dir, "gw-slow", filepath.Join(mnt, "edge"), "tcp://"+nowhere)
	if err != nil {
		return err
	}
	defer e.stopAll(ed.proc)

	slice := e.pickDur(2*time.Second, 6*time.Second)
	baseSlice := e.pickDur(1500*time.Millisecond, 4*time.Second)
	baseDir := filepath.Join(mnt, "baseline")
	var (
		p                  pairs
		load               = &loadResult{}
		baseLat            latencies
		baseN              int
		baseFsyncs, fsyncs int
		journalFsyncs      int // of the outbox journal, which the answers wait for
		commits            float64
		edgeCPU            time.Duration
	)
	for range e.cfg.Pairs {
		f0 := fs.Stats().Fsyncs
		b, err := perEventChild(ctx, baseDir, baseSlice)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		baseFsyncs += fs.Stats().Fsyncs - f0
		baseN += b.n
		baseLat = append(baseLat, b.lat...)
		c0, err := metric(ctx, ed.url, "linli_edge_store_commits_total")
		if err != nil {
			return err
		}
		cpu0, err := ed.cpu()
		if err != nil {
			return err
		}
		st0 := fs.Stats()
		l, err := httpLoad(ctx, ed.url, ingestClients, slice, 0)
		if err != nil {
			return err
		}
		st1 := fs.Stats()
		fsyncs += st1.Fsyncs - st0.Fsyncs
		journalFsyncs += st1.FsyncsBy[".jnl"] - st0.FsyncsBy[".jnl"]
		cpu1, err := ed.cpu()
		if err != nil {
			return err
		}
		c1, err := metric(ctx, ed.url, "linli_edge_store_commits_total")
		if err != nil {
			return err
		}
		commits += c1 - c0
		edgeCPU += cpu1 - cpu0
		load.merge(l)
		p.add(float64(b.n)/b.took.Seconds(), l.rate())
	}
	st, err := ed.sync(ctx)
	if err != nil {
		return err
	}
	if st.LastSeq != uint64(load.ok+load.warm) {
		return fmt.Errorf("edge holds %d events after %d answers 201", st.LastSeq, load.ok+load.warm)
	}
	load.lat.sort()
	baseLat.sort()
	at10 := delay >= 10*time.Millisecond
	sc := fmt.Sprintf("1b edge ingest, fsync %v", delay)
	target := func(t string, ok bool) (string, Verdict) {
		if !at10 {
			return "", Info
		}
		return t, verdict(ok)
	}
	mid := p.medianPair()
	row := Row{Scenario: sc, Figure: "durable writes, 32 HTTP clients, edge data on the slow layer; the median pair",
		Value: fmtRate(p.scen[mid]), Baseline: fmtRate(p.base[mid]) + " (1 synced txn per event, same layer)"}
	var ok func(float64) bool
	if at10 {
		row.Target, ok = "≥ 15×", func(r float64) bool { return r >= 15 }
	}
	e.res.add(p.judged(row, fmtRatio, ok))

	bound := float64(ingestClients) / delay.Seconds()
	var toBound pairs // each pair's rate against the bound, which does not move
	for _, r := range p.scen {
		toBound.add(bound, r)
	}
	row = Row{Scenario: sc, Figure: fmt.Sprintf("share of the group-commit bound (%d clients ÷ %v)", ingestClients, delay),
		Value: fmtRate(p.scen[mid]), Baseline: fmtRate(bound) + " (bound)"}
	ok = nil
	if at10 {
		row.Target, ok = "≥ 60 %", func(r float64) bool { return r >= 0.6 }
	}
	e.res.add(toBound.judged(row, fmtPct, ok))

	p50, p99 := load.lat.pct(0.5), load.lat.pct(0.99)
	t, v := target("p99 < 50 ms", p99 < 50*time.Millisecond)
	e.res.add(Row{Scenario: sc, Figure: "latency p50 / p99 (all pairs)", Value: fmtMs(p50) + " / " + fmtMs(p99),
		Baseline: fmtMs(baseLat.pct(0.5)) + " / " + fmtMs(baseLat.pct(0.99)), Target: t, Verdict: v})
	e.res.add(Row{Scenario: sc, Figure: "events per group commit; fsyncs per group commit, of them the outbox journal's (baseline: per event)",
		Value: fmt.Sprintf("%.1f; %.2f, %.2f", float64(load.ok)/max(commits, 1), float64(fsyncs)/max(commits, 1),
			float64(journalFsyncs)/max(commits, 1)),
		Baseline: fmt.Sprintf("%.2f", float64(baseFsyncs)/float64(max(baseN, 1))), Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: "CPU µs per event: edge", Value: fmt.Sprintf("%.1f", us(edgeCPU)/float64(max(load.ok, 1))), Verdict: Info})
	if load.bad > 0 {
		e.res.add(Row{Scenario: sc, Figure: "answers other than 201", Value: fmt.Sprint(load.bad), Target: "0", Verdict: Fail})
	}
	return nil
}

// The per-event baseline as a child process: the harness serves the FUSE
// layer, and a process serving it must not map files under it itself.
const (
	perEventEnv    = "LINLI_BENCH_PER_EVENT"     // the store's directory
	perEventForEnv = "LINLI_BENCH_PER_EVENT_FOR" // how long to append
)

func perEventArgs(env []string) (dir string, dur time.Duration) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, perEventEnv+"="); ok {
			dir = v
		}
		if v, ok := strings.CutPrefix(kv, perEventForEnv+"="); ok {
			dur, _ = time.ParseDuration(v)
		}
	}
	return dir, dur
}

// perEventResult is what the child reports on its stdout.
type perEventResult struct {
	N      int     `json:"n"`
	TookNs int64   `json:"took_ns"`
	LatNs  []int64 `json:"lat_ns"`
}

// servePerEvent appends to the per-event baseline store in dir for dur and
// writes what it measured to stdout as JSON.
func servePerEvent(ctx context.Context, dir string, dur time.Duration, stdout io.Writer) error {
	if dur <= 0 {
		return fmt.Errorf("%s: no duration", perEventForEnv)
	}
	p, err := openPerEvent(dir)
	if err != nil {
		return fmt.Errorf("per-event baseline: %w", err)
	}
	// Continue the seqs of earlier slices: a slice overwrites nothing.
	p.seq, err = lastSeq(p)
	if err != nil {
		p.close()
		return err
	}
	err = p.run(ctx, dur)
	p.close()
	if err != nil {
		return fmt.Errorf("per-event baseline: %w", err)
	}
	res := perEventResult{N: p.b.n, TookNs: int64(p.b.took)}
	for _, l := range p.b.lat {
		res.LatNs = append(res.LatNs, int64(l))
	}
	return json.NewEncoder(stdout).Encode(res)
}

// perEventChild runs the per-event baseline in a child process for dur.
func perEventChild(ctx context.Context, dir string, dur time.Duration) (*baseline, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), perEventEnv+"="+dir, perEventForEnv+"="+dur.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, oneLine(stderr.String()))
	}
	var r perEventResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("child's answer %q: %w", out, err)
	}
	if r.N == 0 || r.TookNs <= 0 {
		return nil, fmt.Errorf("child appended nothing in %v", dur)
	}
	b := &baseline{n: r.N, took: time.Duration(r.TookNs)}
	b.rate = float64(b.n) / b.took.Seconds()
	for _, l := range r.LatNs {
		b.lat = append(b.lat, time.Duration(l))
	}
	return b, nil
}

// lastSeq is the highest seq a per-event store holds (0: none).
func lastSeq(p *perEvent) (uint64, error) {
	var last uint64
	err := p.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse, opts.PrefetchValues = true, false
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(kv.Key("e/", kv.U64(^uint64(0))))
		if it.ValidForPrefix([]byte("e/")) {
			last = kv.ParseU64(it.Item().Key()[len("e/"):])
		}
		return nil
	})
	return last, err
}
