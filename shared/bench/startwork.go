package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"linli/shared/test/process"
)

// The start-up scenario's work after the settled sample: what a hub does
// on a working day, squeezed into half a minute, so the second sample
// shows what work brings back into memory (table indexes and blocks the
// lookups read, caches), not only what an idle start holds.
const (
	workEdges = 3                // gateway edges posting to the hub
	workRate  = 100.0            // events per second per edge (HTTP 201s)
	workFor   = 30 * time.Second // how long they post
	workReads = 20.0             // operator API reads per second
)

// workRun is what one start's work did and left.
type workRun struct {
	memSample
	events int    // events the edges synced to the hub
	reads  int    // API reads answered 200
	sst    uint64 // resident pages of the store's mapped *.sst files once settled
	peak   uint64 // VmHWM: the start's and the work's peak
}

// driveWork drives work into the hub p (HTTP API at apiURL, broker at mqtt):
// workEdges gateway edges, new to the hub at every start, take check-ins
// and door decisions over HTTP at a paced rate and sync them over MQTT,
// while an operator's client reads the report list, reports by id (the
// open ones in memory and the archived ones from the store) and a
// building gateway's raw events from anywhere in the history. Once every
// edge's events are acked, the edges stop and the hub's memory is sampled
// until it settles.
func (e *runEnv) driveWork(ctx context.Context, h *startupHistory, p *proc, apiURL, mqtt string) (*workRun, error) {
	tok, err := os.ReadFile(filepath.Join(h.data, "admin.token"))
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(string(tok))
	e.seq++
	dir := filepath.Join(h.dir, fmt.Sprintf("work-%d", e.seq))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if !e.cfg.Keep {
			if err := os.RemoveAll(dir); err != nil {
				e.log.Warn("remove work dir", "dir", dir, "err", err)
			}
		}
	}()
	var edges []*edgeProc
	defer func() {
		for _, ed := range edges {
			e.stopAll(ed.proc)
		}
	}()
	for i := range workEdges {
		id := fmt.Sprintf("gw-work-%d-%d", e.seq, i)
		ed, err := e.startEdge(ctx, dir, id, filepath.Join(dir, id), mqtt)
		if err != nil {
			return nil, err
		}
		edges = append(edges, ed)
	}
	w := &workRun{}
	rctx, stopReads := context.WithCancel(ctx)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.reads, readErr = operatorReads(rctx, apiURL, token, h.stats)
	}()
	loads := make([]*loadResult, len(edges))
	errs := make([]error, len(edges))
	var lw sync.WaitGroup
	for i, ed := range edges {
		lw.Add(1)
		go func() {
			defer lw.Done()
			loads[i], errs[i] = httpLoad(ctx, ed.url, 2, workFor, workRate)
		}()
	}
	lw.Wait()
	stopReads()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, fmt.Errorf("operator reads: %w", readErr)
	}
	procs := []*proc{p}
	for _, ed := range edges {
		procs = append(procs, ed.proc)
	}
	for i, ed := range edges {
		err := poll(ctx, 2*time.Minute, 20*time.Millisecond, func() (bool, error) {
			s, err := ed.sync(ctx)
			return err == nil && s.Pending == 0 && s.AckedSeq == s.LastSeq, err
		}, procs...)
		if err != nil {
			return nil, fmt.Errorf("edge %s never caught up: %w", ed.id, err)
		}
		w.events += loads[i].ok + loads[i].warm
	}
	for _, ed := range edges {
		e.stopAll(ed.proc)
	}
	edges = nil
	if w.memSample, err = settle(ctx, p); err != nil {
		return nil, err
	}
	m, err := process.Memory(p.PID())
	if err != nil {
		return nil, err
	}
	w.peak = m["VmHWM"]
	if w.sst, err = mappedRSS(p.PID(), ".sst"); err != nil {
		return nil, err
	}
	return w, nil
}

// operatorReads asks the hub what operators ask, about workReads times a
// second until ctx ends, in turns: the report list as the dashboard reads
// it at every report, vote or rating (archived reports left out), a
// report by id (any
// of the history's, most of them archived), and a page of a building
// gateway's raw events from a random point of its history. It returns
// how many answered 200; any other answer is an error.
func operatorReads(ctx context.Context, apiURL, token string, st *historyStats) (int, error) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / workReads))
	defer tick.Stop()
	rng := rand.New(rand.NewPCG(1, 2))
	var gateways []string
	for dev := range st.lastSeq {
		if strings.HasPrefix(dev, "gw-") {
			gateways = append(gateways, dev)
		}
	}
	n := 0
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return n, nil
		case <-tick.C:
		}
		var u string
		switch {
		case i%3 == 0 || len(st.reportIDs) == 0 && len(gateways) == 0:
			u = apiURL + "/api/v1/reports?archived=0&site=" + benchSite // as the dashboard refreshes it
		case i%3 == 1 && len(st.reportIDs) > 0:
			u = apiURL + "/api/v1/reports/" + url.PathEscape(st.reportIDs[rng.IntN(len(st.reportIDs))])
		default:
			dev := gateways[rng.IntN(len(gateways))]
			u = fmt.Sprintf("%s/api/v1/events?device=%s&after=%d&limit=100", apiURL, dev, rng.Uint64N(st.lastSeq[dev]))
		}
		var out any
		if err := getJSON(ctx, u, token, &out); err != nil {
			if ctx.Err() != nil {
				return n, nil
			}
			return n, fmt.Errorf("GET %s: %w", u, err)
		}
		n++
	}
}

// mappedRSS is the resident bytes of the mappings of process pid whose
// file name ends in suffix, from /proc/PID/smaps.
func mappedRSS(pid int, suffix string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total uint64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		if !strings.HasSuffix(fs[0], ":") { // a mapping's header: address perms offset dev inode [path]
			in = len(fs) >= 6 && strings.HasSuffix(fs[len(fs)-1], suffix)
			continue
		}
		if in && fs[0] == "Rss:" && len(fs) == 3 {
			var kb uint64
			if _, err := fmt.Sscan(fs[1], &kb); err != nil {
				return 0, fmt.Errorf("smaps %q: %w", line, err)
			}
			total += kb << 10
		}
	}
	return total, sc.Err()
}
