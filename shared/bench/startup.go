package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"linli/shared/test/process"
)

// startupHistory is one prepared hub data dir.
type startupHistory struct {
	n     int
	dir   string // the run's directory (logs)
	data  string // the hub's --data
	stats *historyStats
	first *startRun // the first start: no snapshot yet, every fact folded
}

// startRun is one measured start of the hub.
type startRun struct {
	ready, loaded   time.Duration // exec to /readyz 200; exec to the "merged state loaded" log line
	rssReady        uint64        // VmRSS when /readyz first answered 200
	rss, anon, file uint64        // VmRSS, RssAnon, RssFile once it settled
	settled         bool
	settle          time.Duration // ready to settled
	snapshotBytes   int64         // the merged state's snapshot the start read (its log line)
	work            *workRun      // the work after the settled sample; nil for the unmeasured starts
}

// startup is scenario 10: how long the hub takes to start, and how much
// memory it holds, against the size of its stored history.
func startup(ctx context.Context, e *runEnv) error {
	var hs []*startupHistory
	defer func() {
		if e.cfg.Keep {
			return
		}
		for _, h := range hs {
			if err := os.RemoveAll(h.dir); err != nil {
				e.log.Warn("remove start-up data dir", "dir", h.dir, "err", err)
			}
		}
	}()
	for _, n := range e.cfg.StartupSizes {
		h := &startupHistory{n: n, dir: e.dir(fmt.Sprintf("startup-%s", shortCount(n)))}
		h.data = filepath.Join(h.dir, "hub")
		hs = append(hs, h)
		if err := e.prepareHistory(ctx, h); err != nil {
			return fmt.Errorf("%s events: %w", shortCount(n), err)
		}
	}
	var runs = make([][]*startRun, len(hs))
	for range e.cfg.Pairs {
		for i, h := range hs {
			r, err := e.startOnce(ctx, h, true)
			if err != nil {
				return fmt.Errorf("%s events: %w", shortCount(h.n), err)
			}
			runs[i] = append(runs[i], r)
		}
	}
	small, large := hs[0], hs[len(hs)-1]
	rs, rl := runs[0], runs[len(runs)-1]
	var tp, mp, wp pairs
	for i := range rs {
		tp.add(rs[i].ready.Seconds(), rl[i].ready.Seconds())
		mp.add(float64(rs[i].rss), float64(rl[i].rss))
		wp.add(float64(rs[i].work.rss), float64(rl[i].work.rss))
	}
	sc := "10 hub start-up"
	readyL := medianDur(rl, func(r *startRun) time.Duration { return r.ready })
	readyS := medianDur(rs, func(r *startRun) time.Duration { return r.ready })
	row := Row{Scenario: sc, Figure: fmt.Sprintf("start to /readyz 200 with %s stored events, median of %d starts (from the snapshot)", groupThousands(int64(large.n)), len(rl)),
		Value:    fmtSec(readyL) + spread(rl, func(r *startRun) time.Duration { return r.ready }),
		Baseline: fmtSec(readyS) + fmt.Sprintf(" (%s events)", groupThousands(int64(small.n))), Target: "< 2 s"}
	row = tp.judged(row, fmtRatio, nil)
	row.Verdict = verdict(readyL < 2*time.Second)
	e.res.add(row)
	mid := mp.medianPair()
	row = Row{Scenario: sc, Figure: fmt.Sprintf("hub RSS once settled, %s events against %s; the median pair", groupThousands(int64(large.n)), groupThousands(int64(small.n))),
		Value: fmtMiB(uint64(mp.scen[mid])), Baseline: fmtMiB(uint64(mp.base[mid])) + fmt.Sprintf(" (%s events)", groupThousands(int64(small.n))),
		Target: "growth < 10 %"}
	e.res.add(mp.judged(row, func(r float64) string { return "+" + fmtPct(r-1) }, func(r float64) bool { return r-1 < 0.10 }))
	mid = wp.medianPair()
	row = Row{Scenario: sc, Figure: fmt.Sprintf("hub RSS once settled after work (%d edges' events synced, operator reads), %s events against %s; the median pair",
		workEdges, groupThousands(int64(large.n)), groupThousands(int64(small.n))),
		Value: fmtMiB(uint64(wp.scen[mid])), Baseline: fmtMiB(uint64(wp.base[mid])) + fmt.Sprintf(" (%s events)", groupThousands(int64(small.n))),
		Target: "growth < 10 %"}
	e.res.add(wp.judged(row, func(r float64) string { return "+" + fmtPct(r-1) }, func(r float64) bool { return r-1 < 0.10 }))
	for i, h := range hs {
		r := runs[i][medianIdx(runs[i], func(r *startRun) time.Duration { return r.ready })]
		name := groupThousands(int64(h.n)) + " events"
		e.res.add(Row{Scenario: sc, Figure: name + ": start to /readyz; to \"merged state loaded\" (median start)",
			Value: fmtSec(r.ready) + "; " + fmtSec(r.loaded), Verdict: Info})
		settled := "settled in " + fmtSec(r.settle)
		if !r.settled {
			settled = "still moving after " + fmtSec(r.settle)
		}
		e.res.add(Row{Scenario: sc, Figure: name + ": RSS at ready; settled (anonymous / file-backed)",
			Value: fmtMiB(r.rssReady) + "; " + fmtMiB(r.rss) + " (" + fmtMiB(r.anon) + " / " + fmtMiB(r.file) + "), " + settled, Verdict: Info})
		w := r.work
		settled = "settled in " + fmtSec(w.settle)
		if !w.settled {
			settled = "still moving after " + fmtSec(w.settle)
		}
		e.res.add(Row{Scenario: sc, Figure: name + ": after work (events synced, API reads): RSS settled (anonymous / file-backed, of it the tables' *.sst)",
			Value: fmt.Sprintf("%s, %s: ", groupThousands(int64(w.events)), groupThousands(int64(w.reads))) +
				fmtMiB(w.rss) + " (" + fmtMiB(w.anon) + " / " + fmtMiB(w.file) + ", " + fmtMiB(w.sst) + "), " + settled, Verdict: Info})
		var hiStart, hiWork, hiPeak uint64
		for _, r := range runs[i] {
			hiStart, hiWork, hiPeak = max(hiStart, r.rss), max(hiWork, r.work.rss), max(hiPeak, r.work.peak)
		}
		e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("%s: highest of the %d starts: RSS settled at start; after work; peak (VmHWM)", name, len(runs[i])),
			Value: fmtMiB(hiStart) + "; " + fmtMiB(hiWork) + "; " + fmtMiB(hiPeak), Verdict: Info})
		size, err := dirSize(filepath.Join(h.data, "store"))
		if err != nil {
			return err
		}
		e.res.add(Row{Scenario: sc, Figure: name + ": merged state's snapshot read at start (reports " + groupThousands(int64(h.stats.reports)) +
			", activities " + groupThousands(int64(h.stats.activities)) + ")", Value: fmtMiB(uint64(r.snapshotBytes)), Verdict: Info})
		e.res.add(Row{Scenario: sc, Figure: name + ": store on disk; history written in",
			Value: fmtMiB(uint64(size)) + fmt.Sprintf("; %v (%s ev/s)", h.stats.took.Round(time.Second), groupThousands(int64(float64(h.n)/h.stats.took.Seconds()))), Verdict: Info})
		e.res.add(Row{Scenario: sc, Figure: name + ": first start, no snapshot yet (every fact folded), to /readyz",
			Value: fmtSec(h.first.ready), Verdict: Info})
	}
	e.res.note("**10 hub start-up**: the harness builds two hub data dirs, %s and %s stored events. A `linli-hub` first creates each "+
		"(so the store carries its layout version) and stops; the harness then writes the history straight into the store through the hub's own "+
		"packages (hub/store batches of %s events, hub/state folding the facts and staging the downlink as ingest does, operators' decisions "+
		"through the merged state as the API records them), not through MQTT. The mix, per 1,000 events, from %d building gateways and %d lobby "+
		"kiosks: %d sensor readings, %d door decisions (one in ~20,000 a forced door, an alarm), %d governance events (check-ins and -outs, "+
		"reports, \"me too\"s, ratings); an activity of %d hours per 4,000 events, and every report accepted and then resolved by operators "+
		"(in the history's time). The events come at a community's pace of %s a day, ending now: %s events are %d days of history, %s are %d days "+
		"(more events are a longer history of the same community, not a busier one). Every start keeps all raw events (`%s`), so the store holds "+
		"the whole history. A first start folds every fact (no snapshot yet) and writes the snapshot at its clean stop, archiving what has been "+
		"closed or ended for longer than `--memory-hold` (30 days). "+
		"Then the two sizes start in turn, %d pairs, each with the hub's defaults otherwise (embedded broker, `--log-level info`): the figure is the time "+
		"from exec to the first 200 of `GET /readyz` (polled every 5 ms), and to the time stamp of its \"merged state loaded\" log line; "+
		"RSS is VmRSS from /proc when ready and once it settled (sampled every 250 ms until it moved less than 1 %% over 2 s, at most 60 s). "+
		"Then the hub works: %d gateway edges, new at every start, take %.0f check-ins and door decisions a second each over HTTP for %v and "+
		"sync them to the hub over MQTT, while an operator's client makes %.0f API reads a second in turns (the report list as the dashboard refreshes it, archived reports left out, a report by id "+
		"picked from the whole history, most of them archived in the store, and 100 raw events of a building gateway from a random point of its "+
		"history); once every edge is acked the edges stop and RSS is sampled again until it settles (the *.sst figure is the resident pages of "+
		"the store's mapped tables, from /proc/PID/smaps); then the hub stops with SIGTERM. The page cache is warm (the harness just wrote or read the files); a cold start reads the tables from disk.",
		groupThousands(int64(small.n)), groupThousands(int64(large.n)), groupThousands(historyBatch), historyGateways, historyKiosks,
		historyReadPer, 1000-historyReadPer-historyGovPer, historyGovPer, historyActivityHours, groupThousands(historyPerDay),
		groupThousands(int64(small.n)), int(historySpan(small.n).Hours()/24), groupThousands(int64(large.n)), int(historySpan(large.n).Hours()/24),
		strings.Join(historyKeepAll, " "), e.cfg.Pairs, workEdges, workRate, workFor, workReads)
	return nil
}

// prepareHistory creates the hub's data dir with a first start, writes
// the history into its store, and starts it once more to fold it all and
// leave a snapshot.
func (e *runEnv) prepareHistory(ctx context.Context, h *startupHistory) error {
	if _, err := e.startOnce(ctx, h, false); err != nil {
		return fmt.Errorf("create the hub's data dir: %w", err)
	}
	e.log.Info("writing history", "events", h.n)
	st, err := writeHistory(ctx, filepath.Join(h.data, "store"), h.n, e.log.With("component", "history"))
	if err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	h.stats = st
	e.log.Info("history written", "events", h.n, "took", st.took.Round(time.Millisecond))
	if h.first, err = e.startOnce(ctx, h, false); err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	return nil
}

// startOnce starts the hub on h's data dir, measures it and stops it;
// with work, it then drives work into it and measures again.
func (e *runEnv) startOnce(ctx context.Context, h *startupHistory, work bool) (*startRun, error) {
	httpAddr, err := process.FreeAddr()
	if err != nil {
		return nil, err
	}
	mq, err := process.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"--data", h.data, "--http", httpAddr, "--mqtt-listen", mq, "--log-level", "info"}, historyKeepAll...)
	args = append(args, e.cfg.HubArgs...)
	logPath := filepath.Join(h.dir, "hub.log")
	logStart := fileSize(logPath)
	t0 := time.Now()
	p, err := startProc(h.dir, "hub", e.hubBin(), args)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Kill()
		}
	}()
	r := &startRun{}
	url := "http://" + httpAddr + "/readyz"
	if err := poll(ctx, 5*time.Minute, 5*time.Millisecond, func() (bool, error) {
		return getJSON(ctx, url, "", nil) == nil, nil
	}, p); err != nil {
		return nil, fmt.Errorf("hub not ready: %w", err)
	}
	r.ready = time.Since(t0)
	m, err := process.Memory(p.PID())
	if err != nil {
		return nil, err
	}
	r.rssReady = m["VmRSS"]
	line, err := loadedLine(logPath, logStart)
	if err != nil {
		return nil, err
	}
	if r.loaded, r.snapshotBytes, err = parseLoaded(line, t0); err != nil {
		return nil, err
	}
	if err := r.settleMemory(ctx, p); err != nil {
		return nil, err
	}
	if work {
		if r.work, err = e.driveWork(ctx, h, p, "http://"+httpAddr, "tcp://"+mq); err != nil {
			return nil, fmt.Errorf("work: %w", err)
		}
	}
	stopped = true
	if err := p.Stop(); err != nil {
		return nil, fmt.Errorf("stop hub: %w: %s", err, p.Tail(600))
	}
	e.log.Info("hub start", "events", h.n, "ready", r.ready.Round(time.Millisecond), "loaded", r.loaded.Round(time.Millisecond),
		"rss_ready_mib", r.rssReady>>20, "rss_mib", r.rss>>20, "anon_mib", r.anon>>20, "file_mib", r.file>>20, "settled", r.settled)
	if w := r.work; w != nil {
		e.log.Info("hub after work", "events", h.n, "synced", w.events, "reads", w.reads, "rss_mib", w.rss>>20,
			"anon_mib", w.anon>>20, "file_mib", w.file>>20, "sst_mib", w.sst>>20, "peak_mib", w.peak>>20, "settled", w.settled)
	}
	return r, nil
}

// settleMemory samples the hub's memory until it settled (see settle).
func (r *startRun) settleMemory(ctx context.Context, p *proc) error {
	m, err := settle(ctx, p)
	r.rss, r.anon, r.file, r.settled, r.settle = m.rss, m.anon, m.file, m.settled, m.settle
	return err
}

// memSample is a process's memory once it settled.
type memSample struct {
	rss, anon, file uint64 // VmRSS, RssAnon, RssFile (+ RssShmem)
	settled         bool
	settle          time.Duration // how long it took to settle
}

// settle samples the hub's memory every 250 ms until VmRSS moved less
// than 1 % over the last 2 s, or 60 s passed.
func settle(ctx context.Context, p *proc) (memSample, error) {
	const every, window, limit = 250 * time.Millisecond, 8, 60 * time.Second
	start := time.Now()
	var last []uint64
	var r memSample
	for {
		m, err := process.Memory(p.PID())
		if err != nil {
			return r, fmt.Errorf("hub memory: %w (%s)", err, p.Tail(600))
		}
		r.rss, r.anon, r.file = m["VmRSS"], m["RssAnon"], m["RssFile"]+m["RssShmem"]
		last = append(last, r.rss)
		if len(last) > window {
			last = last[1:]
			lo, hi := slices.Min(last), slices.Max(last)
			if float64(hi-lo) < 0.01*float64(hi) {
				r.settled = true
			}
		}
		r.settle = time.Since(start)
		if r.settled || r.settle > limit {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(every):
		}
	}
}

// loadedLine is the hub's "merged state loaded" log line, from offset on
// in its log.
func loadedLine(path string, offset int64) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if int64(len(b)) < offset {
		offset = 0
	}
	for _, line := range strings.Split(string(b[offset:]), "\n") {
		if strings.Contains(line, `msg="merged state loaded"`) {
			return line, nil
		}
	}
	return "", fmt.Errorf("hub log %s has no \"merged state loaded\" line after the start", path)
}

// parseLoaded reads the time stamp of a "merged state loaded" line, as a
// time after t0, and the size of the snapshot it read.
func parseLoaded(line string, t0 time.Time) (after time.Duration, snapshotBytes int64, err error) {
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return 0, 0, fmt.Errorf("hub log line %q: %w", line, err)
			}
			after = t.Sub(t0)
		case "snapshot_bytes":
			if snapshotBytes, err = strconv.ParseInt(v, 10, 64); err != nil {
				return 0, 0, fmt.Errorf("hub log line %q: %w", line, err)
			}
		}
	}
	if after == 0 {
		return 0, 0, fmt.Errorf("hub log line %q has no time", line)
	}
	return after, snapshotBytes, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

func medianIdx(rs []*startRun, f func(*startRun) time.Duration) int {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = float64(f(r))
	}
	return slices.Index(xs, median(xs))
}

func medianDur(rs []*startRun, f func(*startRun) time.Duration) time.Duration {
	return f(rs[medianIdx(rs, f)])
}

// spread is " (min–max)" of f over rs, or "" for one run.
func spread(rs []*startRun, f func(*startRun) time.Duration) string {
	if len(rs) < 2 {
		return ""
	}
	lo, hi := f(rs[0]), f(rs[0])
	for _, r := range rs[1:] {
		lo, hi = min(lo, f(r)), max(hi, f(r))
	}
	return " (" + fmtSec(lo) + "–" + fmtSec(hi) + ")"
}

func fmtSec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// shortCount names a count for a directory: 1M, 10M, 500k.
func shortCount(n int) string {
	switch {
	case n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
