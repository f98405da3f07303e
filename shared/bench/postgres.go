package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/pgstore"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/test/testkit"
)

// Targets of the hub on PostgreSQL: merged events/s at least half of
// COPY of the same rows into the same table on the same server, and the
// 1,000-edge fan-in at least as fast as on Badger's target.
const (
	pgCopyTarget  = 0.50
	pgFaninTarget = 50_000
)

// copyChunk is the rows per COPY transaction of the baseline: about the
// size of the hub's group commits in a catch-up, each committed (and
// synced) before the next.
const copyChunk = 5000

// storeRun is the figures of one run on one store.
type storeRun struct {
	rate      float64
	hubCPU    time.Duration // per event
	pgCPU     time.Duration // per event, the server's processes (PostgreSQL only)
	bytes     int64         // the store's size after the run
	evBytes   int64         // of which the events table (PostgreSQL only)
	ackP50    time.Duration // fan-in only
	ackP99    time.Duration
	committed float64 // hub group commits
	peak      uint64  // fan-in only: the hub's VmHWM
}

// postgresScenario is scenario 11: the catch-up and the 1,000-edge fan-in
// on Badger and on PostgreSQL side by side, against COPY of the same rows
// on the same server, and the cost of a synchronous standby.
func postgresScenario(ctx context.Context, e *runEnv) error {
	srv, err := testkit.StartPostgresServer()
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer srv.Stop()
	n := e.pick(200_000, 1_000_000)
	dir := e.dir("postgres")
	bl, err := prefill(ctx, filepath.Join(dir, "template"), n, e.log.With("component", "prefill"))
	if err != nil {
		return err
	}
	cuRows, err := copyRows(bl.events, func(int) string { return benchSite })
	if err != nil {
		return err
	}
	var cuCopy pairs
	var cuCopyRuns, cuPGRuns, cuBadger []*storeRun
	for range e.cfg.Pairs {
		cp, err := e.copyBaseline(ctx, srv, cuRows)
		if err != nil {
			return fmt.Errorf("catch-up COPY baseline: %w", err)
		}
		pg, err := e.catchupOn(ctx, dir, bl, srv)
		if err != nil {
			return fmt.Errorf("catch-up on PostgreSQL: %w", err)
		}
		bg, err := e.catchupOn(ctx, dir, bl, nil)
		if err != nil {
			return fmt.Errorf("catch-up on Badger: %w", err)
		}
		cuCopy.add(cp.rate, pg.rate)
		cuCopyRuns, cuPGRuns, cuBadger = append(cuCopyRuns, cp), append(cuPGRuns, pg), append(cuBadger, bg)
	}

	// The fan-in's rows for COPY: as they arrive, batch by batch, each
	// round of batches from every edge in turn.
	perEdge := e.pick(200, 1000)
	start := hlc.FromTime(time.Now())
	var fanEvents []event.Event
	var fanSites []string
	{
		all := make([][]event.Event, faninEdges)
		for i := range all {
			if all[i], err = faninEvents(i, perEdge, start); err != nil {
				return err
			}
		}
		for from := 0; from < perEdge; from += faninBatch {
			for i := range all {
				for _, ev := range all[i][from:min(from+faninBatch, perEdge)] {
					ev.Device = faninID(i)
					fanEvents = append(fanEvents, ev)
					fanSites = append(fanSites, faninSite(i))
				}
			}
		}
	}
	fanRows, err := copyRows(fanEvents, func(i int) string { return fanSites[i] })
	if err != nil {
		return err
	}
	var fanCopy pairs
	var fanCopyRuns, fanPGRuns, fanBadger []*storeRun
	for range e.cfg.Pairs {
		cp, err := e.copyBaseline(ctx, srv, fanRows)
		if err != nil {
			return fmt.Errorf("fan-in COPY baseline: %w", err)
		}
		pg, err := e.faninOn(ctx, srv)
		if err != nil {
			return fmt.Errorf("fan-in on PostgreSQL: %w", err)
		}
		bg, err := e.faninOn(ctx, nil)
		if err != nil {
			return fmt.Errorf("fan-in on Badger: %w", err)
		}
		fanCopy.add(cp.rate, pg.rate)
		fanCopyRuns, fanPGRuns, fanBadger = append(fanCopyRuns, cp), append(fanPGRuns, pg), append(fanBadger, bg)
	}

	// A synchronous standby on the same machine: catch-ups on a server
	// with one, alternated with catch-ups on the server without.
	var standby pairs
	syncErr := func() error {
		pair, err := testkit.StartPostgresServer()
		if err != nil {
			return err
		}
		defer pair.Stop()
		if err := pair.StartSyncStandby(ctx); err != nil {
			return err
		}
		for range max(e.cfg.Pairs/2, 2) {
			without, err := e.catchupOn(ctx, dir, bl, srv)
			if err != nil {
				return err
			}
			with, err := e.catchupOn(ctx, dir, bl, pair)
			if err != nil {
				return err
			}
			standby.add(without.rate, with.rate)
		}
		return nil
	}()

	sc := "11 hub on PostgreSQL"
	i := cuCopy.medianPair()
	e.res.add(cuCopy.judged(Row{Scenario: sc, Figure: fmt.Sprintf("catch-up: %s events drained to a hub on PostgreSQL, merged and acked; the median pair", groupThousands(int64(n))),
		Value: fmtRate(cuCopy.scen[i]), Baseline: fmtRate(cuCopy.base[i]) + " (COPY of the same rows, same server)", Target: "≥ 50 %"},
		fmtPct, func(r float64) bool { return r >= pgCopyTarget }))
	e.res.add(Row{Scenario: sc, Figure: "catch-up, the same backlog and pairs: Badger / PostgreSQL, median of runs (min–max)",
		Value: runSpread(cuBadger, rateOf) + " / " + runSpread(cuPGRuns, rateOf), Verdict: Info})
	j := fanCopy.medianPair()
	e.res.add(fanCopy.judged(Row{Scenario: sc, Figure: fmt.Sprintf("fan-in: %d edges × %s events to a hub on PostgreSQL, merged and acked; the median pair", faninEdges, groupThousands(int64(perEdge))),
		Value: fmtRate(fanCopy.scen[j]), Baseline: fmtRate(fanCopy.base[j]) + " (COPY of the same rows, same server)", Target: "≥ 50 %"},
		fmtPct, func(r float64) bool { return r >= pgCopyTarget }))
	fanMed := median(fanCopy.scen)
	e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("fan-in on PostgreSQL, median of %d runs", fanCopy.n()), Value: fmtRate(fanMed),
		Target: "≥ 50,000 ev/s", Verdict: verdict(fanMed >= pgFaninTarget)})
	e.res.add(Row{Scenario: sc, Figure: "fan-in, the same runs: Badger / PostgreSQL, median of runs (min–max)",
		Value: runSpread(fanBadger, rateOf) + " / " + runSpread(fanPGRuns, rateOf), Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: "fan-in ack latency p50 / p99 (batch published → hub's ack), median run: Badger; PostgreSQL",
		Value: fmtMs(medianRun(fanBadger).ackP50) + " / " + fmtMs(medianRun(fanBadger).ackP99) + "; " +
			fmtMs(medianRun(fanPGRuns).ackP50) + " / " + fmtMs(medianRun(fanPGRuns).ackP99), Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: "hub CPU µs per event, Badger / PostgreSQL: catch-up; fan-in (median of runs)",
		Value:   fmt.Sprintf("%s / %s; %s / %s", runSpread(cuBadger, hubCPUOf), runSpread(cuPGRuns, hubCPUOf), runSpread(fanBadger, hubCPUOf), runSpread(fanPGRuns, hubCPUOf)),
		Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: "hub peak RSS (VmHWM) in the fan-in, MiB, Badger / PostgreSQL (median of runs)",
		Value: runSpread(fanBadger, peakMiBOf) + " / " + runSpread(fanPGRuns, peakMiBOf), Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: "PostgreSQL server CPU µs per event (all its processes): catch-up; fan-in; COPY (median of runs)",
		Value: fmt.Sprintf("%s; %s; %s", runSpread(cuPGRuns, pgCPUOf), runSpread(fanPGRuns, pgCPUOf), runSpread(append(cuCopyRuns, fanCopyRuns...), pgCPUOf)), Verdict: Info})
	perM := func(b int64, events int) string { return fmtMiB(uint64(float64(b) * 1e6 / float64(events))) }
	cuPGm, cuCPm, cuBm := medianRun(cuPGRuns), medianRun(cuCopyRuns), medianRun(cuBadger)
	e.res.add(Row{Scenario: sc, Figure: "store size per million events after the catch-up: PostgreSQL (events table; whole database) / COPY's events table / Badger (--data, blocks on disk)",
		Value: fmt.Sprintf("%s; %s / %s / %s", perM(cuPGm.evBytes, n), perM(cuPGm.bytes, n), perM(cuCPm.evBytes, n), perM(cuBm.bytes, n)), Verdict: Info})
	fanPGm := medianRun(fanPGRuns)
	total := faninEdges * perEdge
	e.res.add(Row{Scenario: sc, Figure: "store size per million events after the fan-in: PostgreSQL (events table; whole database) / Badger",
		Value: fmt.Sprintf("%s; %s / %s", perM(fanPGm.evBytes, total), perM(fanPGm.bytes, total), perM(medianRun(fanBadger).bytes, total)), Verdict: Info})
	if syncErr != nil {
		e.res.add(Row{Scenario: sc, Figure: "catch-up with a synchronous standby on the same machine", Value: "not measured: " + oneLine(syncErr.Error()), Verdict: Info})
	} else {
		k := standby.medianPair()
		e.res.add(standby.judged(Row{Scenario: sc, Figure: "catch-up with a synchronous standby on the same machine; the median pair",
			Value: fmtRate(standby.scen[k]), Baseline: fmtRate(standby.base[k]) + " (no standby)"}, fmtPct, nil))
	}
	e.res.note("**11 hub on PostgreSQL**: one PostgreSQL server started by the harness (testkit.StartPostgresServer: initdb in a temporary directory, "+
		"loopback, fsync and synchronous_commit on, shared_buffers 32MB, Debian's newest installed server), a fresh database per run. "+
		"Catch-up: the backlog of scenario 2 (%s events, one gateway) drained through a hub with its embedded broker and `--store postgres://…`, "+
		"then through a hub on Badger; fan-in: scenario 6 with `--store`, then on Badger. Each is paired with its baseline, run just before it: "+
		"the same rows (site, device, seq and the body the hub stores: the event without its device, same sizes and keys; the fan-in's in arrival order, "+
		"a round of batches from every edge in turn) COPYed into the `events` table of a freshly migrated database on the same server, "+
		"%s rows per transaction, serially. %d pairs each; the standby rows: %d pairs of a catch-up on the server without a standby and on a second "+
		"server with a synchronous standby (pg_basebackup -R, synchronous_standby_names) on the same machine. PostgreSQL CPU is the server's "+
		"processes' user+system time from /proc (the postmaster's own and reaped children's, plus its live children's) over the drain; sizes are "+
		"pg_total_relation_size of `events` and the sum over every table of the database; Badger's is the blocks its --data directory holds after the hub stops.",
		groupThousands(int64(n)), groupThousands(copyChunk), e.cfg.Pairs, max(e.cfg.Pairs/2, 2))
	return nil
}

func rateOf(r *storeRun) float64    { return r.rate }
func hubCPUOf(r *storeRun) float64  { return us(r.hubCPU) }
func pgCPUOf(r *storeRun) float64   { return us(r.pgCPU) }
func peakMiBOf(r *storeRun) float64 { return float64(r.peak) / (1 << 20) }

// runSpread is the median of f over runs with min and max.
func runSpread(runs []*storeRun, f func(*storeRun) float64) string {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	if len(xs) == 0 {
		return "–"
	}
	format := func(v float64) string {
		if v >= 1000 {
			return groupThousands(int64(v + 0.5))
		}
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return fmt.Sprintf("%s (%s–%s)", format(median(xs)), format(slices.Min(xs)), format(slices.Max(xs)))
}

// medianRun is the run of median rate.
func medianRun(runs []*storeRun) *storeRun {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b *storeRun) int {
		switch {
		case a.rate < b.rate:
			return -1
		case a.rate > b.rate:
			return 1
		}
		return 0
	})
	return s[(len(s)-1)/2]
}

// copyRows are events as the hub stores them: site, device, seq and the
// event encoded without its device.
func copyRows(evs []event.Event, site func(i int) string) ([][]any, error) {
	rows := make([][]any, len(evs))
	for i := range evs {
		ev := evs[i]
		device := ev.Device
		ev.Device = ""
		body, err := ev.Encode()
		if err != nil {
			return nil, err
		}
		rows[i] = []any{site(i), device, int64(ev.Seq), body}
	}
	return rows, nil
}

// newDatabase creates a fresh database on srv.
func (e *runEnv) newDatabase(ctx context.Context, srv *testkit.PostgresServer) (string, string, error) {
	e.seq++
	name := fmt.Sprintf("bench_%d_%d", os.Getpid(), e.seq)
	u, err := srv.CreateDatabase(ctx, name)
	return name, u, err
}

// copyBaseline COPYs rows into the events table of a freshly migrated
// database on srv, copyChunk rows per transaction.
func (e *runEnv) copyBaseline(ctx context.Context, srv *testkit.PostgresServer, rows [][]any) (*storeRun, error) {
	name, u, err := e.newDatabase(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := srv.DropDatabase(context.Background(), name); err != nil {
			e.log.Warn("drop database", "name", name, "err", err)
		}
	}()
	st, err := pgstore.Open(ctx, u, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	_ = st.Close()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	cpu0, err := treeCPU(srv.PID())
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	for i := 0; i < len(rows); i += copyChunk {
		part := rows[i:min(i+copyChunk, len(rows))]
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"site", "device", "seq", "body"}, pgx.CopyFromRows(part))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("COPY: %w", err)
		}
	}
	took := time.Since(begin)
	cpu1, err := treeCPU(srv.PID())
	if err != nil {
		return nil, err
	}
	r := &storeRun{rate: float64(len(rows)) / took.Seconds(), pgCPU: (cpu1 - cpu0) / time.Duration(len(rows))}
	r.evBytes, r.bytes, err = dbSize(ctx, c)
	return r, err
}

// dbSize is the size of the events table and of every table of the
// database, indexes and TOAST included.
func dbSize(ctx context.Context, c *pgx.Conn) (events, all int64, err error) {
	err = c.QueryRow(ctx, `SELECT pg_total_relation_size('events'),
		(SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind = 'r' AND n.nspname = 'public')`).Scan(&events, &all)
	return events, all, err
}

// hubStore makes the store of a hub run: the hub's flags and, on
// PostgreSQL, the database and its cleanup.
func (e *runEnv) hubStore(ctx context.Context, srv *testkit.PostgresServer) (args []string, u string, done func(), err error) {
	if srv == nil {
		return nil, "", func() {}, nil
	}
	name, u, err := e.newDatabase(ctx, srv)
	if err != nil {
		return nil, "", nil, err
	}
	return []string{"--store", u}, u, func() {
		if err := srv.DropDatabase(context.Background(), name); err != nil {
			e.log.Warn("drop database", "name", name, "err", err)
		}
	}, nil
}

// storeSize fills r's sizes: the database's tables on PostgreSQL, the
// data directory's blocks on Badger.
func storeSize(ctx context.Context, r *storeRun, u, data string) error {
	if u == "" {
		r.bytes = dirBlocks(data)
		return nil
	}
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	r.evBytes, r.bytes, err = dbSize(ctx, c)
	return err
}

// catchupOn drains the backlog bl through a hub (embedded broker) on
// Badger (srv nil) or a fresh database on srv.
func (e *runEnv) catchupOn(ctx context.Context, dir string, bl *backlog, srv *testkit.PostgresServer) (*storeRun, error) {
	n := len(bl.events)
	e.seq++
	run := filepath.Join(dir, fmt.Sprintf("run-%d", e.seq))
	args, u, done, err := e.hubStore(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer done()
	data := filepath.Join(run, "edge")
	if err := os.MkdirAll(run, 0o700); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", bl.dir, data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy backlog: %v: %s", err, out)
	}
	h, err := e.startHub(ctx, run, "", args...)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(h.proc)
	pg0, err := serverCPU(srv)
	if err != nil {
		return nil, err
	}
	hub0, err := h.cpu()
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	ed, err := e.startEdge(ctx, run, catchupDevice, data, h.mqtt)
	if err != nil {
		return nil, err
	}
	defer e.stopAll(ed.proc)
	err = poll(ctx, e.pickDur(5*time.Minute, 20*time.Minute), 10*time.Millisecond, func() (bool, error) {
		s, err := ed.sync(ctx)
		return err == nil && s.AckedSeq >= uint64(n) && s.Pending == 0, err
	}, ed.proc, h.proc)
	if err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	took := time.Since(begin)
	hub1, err1 := h.cpu()
	pg1, err2 := serverCPU(srv)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	r := &storeRun{rate: float64(n) / took.Seconds(), hubCPU: (hub1 - hub0) / time.Duration(n), pgCPU: (pg1 - pg0) / time.Duration(n)}
	if r.committed, err = metric(ctx, h.url, "linli_hub_commits_total"); err != nil {
		return nil, err
	}
	devs, err := h.devices(ctx)
	if err != nil {
		return nil, err
	}
	if d := devs[catchupDevice]; d.Received != uint64(n) || d.AckedSeq != uint64(n) {
		return nil, fmt.Errorf("hub holds %d events of %s acked to %d, want %d", d.Received, catchupDevice, d.AckedSeq, n)
	}
	e.stopAll(ed.proc, h.proc)
	if err := storeSize(ctx, r, u, h.data); err != nil {
		return nil, err
	}
	return r, os.RemoveAll(run)
}

// faninOn runs the fan-in against a hub on Badger (srv nil) or a fresh
// database on srv.
func (e *runEnv) faninOn(ctx context.Context, srv *testkit.PostgresServer) (*storeRun, error) {
	args, u, done, err := e.hubStore(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer done()
	dir := e.dir("fanin")
	var pg0, pg1 time.Duration
	var cpuErr error
	fr, err := e.fanInRun(ctx, dir, args, func(started bool) {
		c, err := serverCPU(srv)
		cpuErr = errors.Join(cpuErr, err)
		if started {
			pg0 = c
		} else {
			pg1 = c
		}
	})
	if err != nil {
		return nil, err
	}
	if cpuErr != nil {
		return nil, cpuErr
	}
	total := faninEdges * fr.perEdge
	r := &storeRun{rate: fr.rate, hubCPU: fr.hubCPU, pgCPU: (pg1 - pg0) / time.Duration(total),
		ackP50: fr.lat.pct(0.5), ackP99: fr.lat.pct(0.99), peak: fr.peak}
	if err := storeSize(ctx, r, u, fr.hub.data); err != nil {
		return nil, err
	}
	return r, os.RemoveAll(dir)
}

// serverCPU is the CPU time of srv's processes so far (0 without srv).
func serverCPU(srv *testkit.PostgresServer) (time.Duration, error) {
	if srv == nil {
		return 0, nil
	}
	c, err := treeCPU(srv.PID())
	if err != nil {
		return 0, err
	}
	if p := srv.StandbyPID(); p != 0 {
		s, err := treeCPU(p)
		return c + s, err
	}
	return c, nil
}

// treeCPU is the user+system CPU time of process root and its children:
// its own, its reaped children's (cutime, cstime) and its live children's.
// PostgreSQL runs a process per connection and background worker, all
// children of the postmaster.
func treeCPU(root int) (time.Duration, error) {
	f, err := statFields(root)
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseUint(f[i], 10, 64)
		ticks += v
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(root)
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == root {
			continue
		}
		f, err := statFields(pid)
		if err != nil || f[1] != want { // gone, or not a child
			continue
		}
		for _, i := range []int{11, 12} {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			ticks += v
		}
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / hz, nil
}

// statFields are the fields of /proc/pid/stat after the command: state,
// ppid, … (so utime is [11]).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return f, nil
}

// dirBlocks is the space the files under dir take on disk (Badger
// preallocates its logs sparsely: their length overstates it).
func dirBlocks(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
