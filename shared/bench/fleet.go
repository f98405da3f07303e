package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/test/fleet"
	"linli/shared/test/process"
	"linli/shared/test/testkit"
)

// fleetRate is the steady load of the fleet scenario, over all edges.
const fleetRate = 1000.0

// fleetScale is scenario 11: a fleet of enrolled, signing edges (5,000
// over 500 sites with --long, 500 over 50 otherwise) in the harness
// process, behind Mosquitto with the logins and ACLs the hub writes, to
// --fleet-hubs hubs (one on Badger, or a district's workers on
// PostgreSQL). Phases: (a) a steady 1,000 ev/s; (b) Mosquitto restarted,
// every edge reconnecting at once with what it wrote meanwhile; (c) one
// worker SIGKILLed during the load, with more than one.
func fleetScale(ctx context.Context, e *runEnv) error {
	if e.cfg.Mosquitto == "" {
		return errors.New("the fleet runs behind Mosquitto, and --mosquitto is empty")
	}
	edges, sites := e.pick(500, 5000), e.pick(50, 500)
	steady := e.pickDur(20*time.Second, 60*time.Second)
	dir := e.dir("fleet")
	mqAddr, err := process.FreeAddr()
	if err != nil {
		return err
	}
	broker := "tcp://" + mqAddr

	fh, err := e.startFleetHubs(ctx, dir, broker, mqAddr)
	if err != nil {
		return err
	}
	defer fh.stop()
	hubs, mosq, files := fh.hubs, fh.mosq, fh.files
	h0 := hubs[0]

	t0 := time.Now()
	fl, err := fleet.Enroll(ctx, fleet.Config{Hub: h0.url, Token: h0.token, Broker: broker, Dir: filepath.Join(dir, "edges"),
		Edges: edges, Sites: sites, Prefix: fleetPrefix, Parallel: 32, Log: e.log})
	if err != nil {
		return err
	}
	enrollTook := time.Since(t0)
	e.log.Info("fleet enrolled", "edges", edges, "took", enrollTook.Round(time.Millisecond))
	// Mosquitto reads the new logins on SIGHUP, as its systemd unit's
	// reload does.
	users := make([]string, len(fl.Edges))
	for i, ed := range fl.Edges {
		users[i] = ed.ID
	}
	if err := waitLogins(ctx, files, users, h0.proc); err != nil {
		return err
	}
	if err := syscall.Kill(mosq.PID(), syscall.SIGHUP); err != nil {
		return err
	}
	t0 = time.Now()
	if err := fl.Start(ctx, 5*time.Minute); err != nil {
		return fmt.Errorf("connect the fleet: %w", err)
	}
	defer fl.Close()
	connectTook := time.Since(t0)
	e.log.Info("fleet connected", "took", connectTook.Round(time.Millisecond))
	cpu0 := make([]time.Duration, len(hubs))
	for i, h := range hubs {
		if cpu0[i], err = h.cpu(); err != nil {
			return err
		}
	}

	// (a) Steady load.
	fl.Latencies()
	before := fl.Stats()
	t0 = time.Now()
	written := fl.Pace(ctx, fleetRate, steady)
	window := time.Since(t0)
	ackedInWindow := fl.Stats().Acked - before.Acked
	if err := fl.WaitCaughtUp(ctx, 2*time.Minute); err != nil {
		return fmt.Errorf("steady load: %w", err)
	}
	lat := fl.Latencies()
	if int64(len(lat)) != written {
		return fmt.Errorf("steady load: %d latency samples for %d events written", len(lat), written)
	}
	var hubCPU []string
	for i, h := range hubs {
		c, err := h.cpu()
		if err != nil {
			return err
		}
		hubCPU = append(hubCPU, fmt.Sprintf("%.0f %%", 100*float64(c-cpu0[i])/float64(window)))
	}
	rate := float64(ackedInWindow) / window.Seconds()
	p99 := fleet.Percentile(lat, 0.99)
	sc := fmt.Sprintf("11 fleet (%s edges, %d sites, %d hub", groupThousands(int64(edges)), sites, len(hubs))
	if len(hubs) > 1 {
		sc += "s"
	}
	sc += ", Mosquitto)"
	e.res.add(Row{Scenario: sc, Figure: "enrollment through the hub's API, 32 at once (token, key, login); then all connected",
		Value: fmt.Sprintf("%.1f s (%s devices/s); %.1f s", enrollTook.Seconds(), groupThousands(int64(float64(edges)/enrollTook.Seconds())), connectTook.Seconds()), Verdict: Info})
	e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("(a) steady load for %v: events acked by the hub within it", steady),
		Value: fmtRate(rate), Target: "≥ 980 ev/s", Verdict: verdict(rate >= 0.98*fleetRate)})
	e.res.add(Row{Scenario: sc, Figure: "(a) ack latency p50 / p99 (written → hub's signed ack)",
		Value: fmtMs(fleet.Percentile(lat, 0.5)) + " / " + fmtMs(p99), Target: "p99 < 1 s", Verdict: verdict(p99 < time.Second)})
	e.res.add(Row{Scenario: sc, Figure: "(a) hub CPU during the steady load (of one core)", Value: strings.Join(hubCPU, " / "), Verdict: Info})

	// (b) Mosquitto restarts: every edge loses its session, records one
	// event offline, and reconnects by itself.
	if err := mosq.Stop(); err != nil {
		return fmt.Errorf("stop mosquitto: %w", err)
	}
	if err := poll(ctx, time.Minute, 20*time.Millisecond, func() (bool, error) { return fl.Connected() == 0, nil }); err != nil {
		return fmt.Errorf("edges still connected after Mosquitto stopped: %d: %w", fl.Connected(), err)
	}
	fl.WriteEach(1)
	if err := mosq.Restart(); err != nil {
		return fmt.Errorf("restart mosquitto: %w", err)
	}
	t0 = time.Now()
	if err := process.WaitListening(ctx, mqAddr, 10*time.Second, mosq.Proc); err != nil {
		return err
	}
	var allConnected time.Duration
	if err := poll(ctx, 10*time.Minute, 20*time.Millisecond, func() (bool, error) {
		if allConnected == 0 && fl.Connected() == edges {
			allConnected = time.Since(t0)
		}
		return fl.CaughtUp() == edges, nil
	}, mosq); err != nil {
		return fmt.Errorf("after the broker restart, %d of %d edges caught up: %w", fl.CaughtUp(), edges, err)
	}
	caughtUp := time.Since(t0)
	if allConnected == 0 {
		allConnected = caughtUp
	}
	fl.Latencies()
	e.res.add(Row{Scenario: sc, Figure: "(b) Mosquitto restarted, every edge with 1 event written meanwhile: all reconnected / all acked and caught up",
		Value: fmt.Sprintf("%.1f s / %.1f s", allConnected.Seconds(), caughtUp.Seconds()), Verdict: Info})

	// (c) One worker SIGKILLed during the load: its sites' leases expire
	// and the others take them; its edges' batches go unanswered until
	// then, and each edge resends from the new owner's answer to its hello.
	killedMem := ""
	if len(hubs) < 2 {
		e.res.add(Row{Scenario: sc, Figure: "(c) one hub killed during the load", Value: "not measured: one hub (--fleet-hubs 3 --fleet-store pg runs three workers)", Verdict: Info})
	} else {
		killed := hubs[len(hubs)-1]
		killedID := fleetHubID(len(hubs) - 1)
		done := make(chan int64, 1)
		go func() { done <- fl.Pace(ctx, fleetRate, steady) }()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(steady / 2):
		}
		killedPeak, _, _ := killed.memory() // reported with the others below
		killed.Kill()
		kt := time.Now()
		// Takeover: every site's live lease another worker's, then every
		// site served by them (taken on: loaded and subscribed to).
		moved := make(chan [2]time.Duration, 1)
		go func() {
			err := poll(ctx, 5*time.Minute, 20*time.Millisecond, func() (bool, error) {
				mine, others, err := siteLeases(ctx, fh.store, killedID)
				return err == nil && mine == 0 && others == sites, nil
			})
			if err != nil {
				moved <- [2]time.Duration{-1, -1}
				return
			}
			leased := time.Since(kt)
			err = poll(ctx, 5*time.Minute, 20*time.Millisecond, func() (bool, error) {
				n := 0
				for _, h := range hubs[:len(hubs)-1] {
					v, err := metric(ctx, h.url, "linli_hub_sites_served")
					if err != nil {
						return false, nil
					}
					n += int(v)
				}
				return n == sites, nil
			})
			if err != nil {
				moved <- [2]time.Duration{leased, -1}
				return
			}
			moved <- [2]time.Duration{leased, time.Since(kt)}
		}()
		// Every edge acked again: all it wrote before the kill is acked.
		marks := make([]uint64, len(fl.Edges))
		for i, ed := range fl.Edges {
			marks[i], _ = ed.Cursors()
		}
		var reacked time.Duration
		if err := poll(ctx, 5*time.Minute, 20*time.Millisecond, func() (bool, error) {
			for i, ed := range fl.Edges {
				if _, a := ed.Cursors(); a < marks[i] {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			return fmt.Errorf("after a worker was killed, not every edge was acked again: %w", err)
		}
		reacked = time.Since(kt)
		takeover := <-moved
		n := <-done
		if err := fl.WaitCaughtUp(ctx, 5*time.Minute); err != nil {
			return fmt.Errorf("after a worker was killed: %w", err)
		}
		lat := fl.Latencies()
		e.res.add(Row{Scenario: sc, Figure: "(c) one worker SIGKILLed half-way: events written; ack p99; every edge acked for all it wrote before the kill; all caught up",
			Value: fmt.Sprintf("%s; %s; %.1f s; %.1f s", groupThousands(n), fmtMs(fleet.Percentile(lat, 0.99)), reacked.Seconds(), time.Since(kt).Seconds()), Verdict: Info})
		if takeover[0] < 0 || takeover[1] < 0 {
			return fmt.Errorf("after a worker was killed, its sites did not all move to the others (leases %v, served %v)", takeover[0], takeover[1])
		}
		e.res.add(Row{Scenario: sc, Figure: "(c) the killed worker's sites owned by the others (every site's live lease theirs) / served by them (taken on), after the SIGKILL",
			Value: fmt.Sprintf("%.1f s / %.1f s", takeover[0].Seconds(), takeover[1].Seconds()), Target: "< 10 s", Verdict: verdict(takeover[1] < 10*time.Second)})
		killedMem = fmt.Sprintf("; the killed one %s peak before the kill (its figure: since its restart)", fmtMiB(killedPeak))

		// (d) The killed worker started again on the district as it is
		// now (every edge enrolled, the sites held by the others): the
		// time until it holds its share of the leases, then until every
		// edge has an event written then acked.
		if err := killed.Restart(); err != nil {
			return fmt.Errorf("start the killed worker again: %w", err)
		}
		st := time.Now()
		share := sites / len(hubs)
		if err := poll(ctx, 5*time.Minute, 20*time.Millisecond, func() (bool, error) {
			mine, _, err := siteLeases(ctx, fh.store, killedID)
			return err == nil && mine >= share, nil
		}, killed.proc); err != nil {
			return fmt.Errorf("the restarted worker never held its share of %d sites: %w", share, err)
		}
		held := time.Since(st)
		if err := poll(ctx, 5*time.Minute, 20*time.Millisecond, func() (bool, error) {
			n, err := metric(ctx, killed.url, "linli_hub_sites_served")
			return err == nil && int(n) >= share, nil
		}, killed.proc); err != nil {
			return fmt.Errorf("the restarted worker never served its share of %d sites: %w", share, err)
		}
		serving := time.Since(st)
		fl.WriteEach(1)
		if err := fl.WaitCaughtUp(ctx, 5*time.Minute); err != nil {
			return fmt.Errorf("after the killed worker started again: %w", err)
		}
		served := time.Since(st)
		fl.Latencies()
		e.res.add(Row{Scenario: sc, Figure: fmt.Sprintf("(d) the killed worker started again: holds its share (%d sites) / serves it (taken on) / every edge acked an event written then", share),
			Value: fmt.Sprintf("%.1f s / %.1f s / %.1f s", held.Seconds(), serving.Seconds(), served.Seconds()), Verdict: Info})
	}

	// Memory of each hub; then the store: on Badger each hub's directory
	// once it has stopped cleanly (a running Badger's files include its
	// write-ahead log and preallocated space); on PostgreSQL the
	// database, where every event acked must be stored exactly once.
	st := fl.Stats()
	var mem, store []string
	for _, h := range hubs {
		peak, cur, err := h.memory()
		if err != nil {
			return err
		}
		mem = append(mem, fmt.Sprintf("%s / %s", fmtMiB(peak), fmtMiB(cur)))
	}
	e.res.add(Row{Scenario: sc, Figure: "memory per hub, peak / at the end (RSS)", Value: strings.Join(mem, "; ") + killedMem, Verdict: Info})
	fl.Close()
	for _, h := range hubs {
		e.stopAll(h.proc)
		if fh.store != "" {
			continue
		}
		size, err := process.DiskUsage(filepath.Join(h.data, "store"))
		if err != nil {
			return err
		}
		store = append(store, fmt.Sprintf("%.0f MiB (%.1f MiB for %s events)", float64(size)/(1<<20)/float64(st.Acked)*1e6,
			float64(size)/(1<<20), groupThousands(int64(st.Acked))))
	}
	if fh.store == "" {
		e.res.add(Row{Scenario: sc, Figure: "store on disk per million events (Badger after a clean stop, with the fleet's device records)",
			Value: strings.Join(store, "; "), Verdict: Info})
	} else {
		stored, evBytes, allBytes, err := storedEvents(ctx, fh.store, fleetPrefix)
		if err != nil {
			return err
		}
		e.res.add(Row{Scenario: sc, Figure: "events acked by the workers / written by the edges / stored in PostgreSQL's events table",
			Value:  fmt.Sprintf("%s / %s / %s", groupThousands(int64(st.Acked)), groupThousands(int64(st.Written)), groupThousands(stored)),
			Target: "all equal", Verdict: verdict(st.Acked == st.Written && int64(st.Acked) == stored)})
		e.res.add(Row{Scenario: sc, Figure: "PostgreSQL size per million events: events table; all tables",
			Value: fmt.Sprintf("%s; %s", perMillion(evBytes, stored), perMillion(allBytes, stored)), Verdict: Info})
	}
	self, err := process.Memory(os.Getpid())
	if err == nil {
		e.res.add(Row{Scenario: sc, Figure: "load process (every simulated edge) peak RSS, per edge", Value: fmt.Sprintf("%s, %.0f KiB",
			fmtMiB(self["VmHWM"]), float64(self["VmHWM"])/1024/float64(edges)), Verdict: Info})
	}
	e.res.note("**11 fleet**: %s simulated edges over %d sites in the harness process (shared/test/fleet), each enrolled through the hub's API "+
		"(a one-time token, then edge/enroll with its own Ed25519 key; 32 at once), each its own paho session with its own Mosquitto login "+
		"and ACL (configs/mosquitto-secure.conf, the files written by the hub's --mosquitto-files), signing every batch (COSE) and checking "+
		"the hub's signed acks as the uplink does. A paced writer spreads %.0f events/s over the fleet, edge by edge in turn; an event's latency "+
		"runs from its write to the first hub ack that covers it. (b) stops Mosquitto, writes one event on every edge, starts Mosquitto again "+
		"and times until every edge has reconnected (uplink backoff, 250 ms doubling to 10 s, jittered) and has every event acked. "+
		"On Badger the store is the hub's directory after a clean stop, per million events acked (%s in this run). "+
		"`--fleet-hubs 3 --fleet-store pg` runs a district of three workers on a PostgreSQL server the harness starts (or `--fleet-store URL`): "+
		"the first started alone, its hub.key and mosquitto/hub.password copied to the others, every one with the same --district and its own --id, "+
		"leases on, one shared pair of Mosquitto files; the fleet enrolls through the first; (c) SIGKILLs the last worker half-way through a "+
		"second steady load and times until every edge has all it wrote before the kill acked (its sites' leases expire and move), then until all "+
		"is acked; afterwards every acked event must be in PostgreSQL's events table exactly once, and the database's size is per million events.",
		groupThousands(int64(edges)), sites, fleetRate, groupThousands(int64(st.Acked)))
	return nil
}

// startSecureMosquitto runs Mosquitto with configs/mosquitto-secure.conf
// (no anonymous logins; per-device passwords and ACLs) reading the hub's
// files in files, on addr, its persistence in dir.
func (e *runEnv) startSecureMosquitto(ctx context.Context, dir, addr, files string) (*proc, error) {
	base, err := os.ReadFile(filepath.Join(filepath.Dir(e.cfg.MosqConf), "mosquitto-secure.conf"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	extra := []string{"password_file " + filepath.Join(files, "passwd"), "acl_file " + filepath.Join(files, "acl")}
	if os.Geteuid() == 0 {
		// As root Mosquitto drops to its own user, which cannot read the
		// hub's files in the harness's scratch directory.
		extra = append(extra, "user root")
	}
	_, p, err := process.StartMosquitto(ctx, process.Mosquitto{Bin: e.cfg.Mosquitto, Base: string(base), Addr: addr, Dir: dir, Extra: extra})
	if err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	return &proc{p}, nil
}

// redactURL drops a store URL's password for the report.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "…" + u[at:]
		}
	}
	return u
}

// fleetPrefix names the fleet's edges and sites.
const fleetPrefix = "fl"

// fleetDistrict is the district the fleet's workers sign as.
const fleetDistrict = "fleet-district"

// fleetHubs are the hubs of the fleet scenario and the Mosquitto in front
// of them.
type fleetHubs struct {
	hubs  []*hub
	mosq  *proc
	files string // the password file and ACL Mosquitto reads
	store string // the workers' PostgreSQL URL; "" on Badger
	stops []func()
}

func (f *fleetHubs) stop() {
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
}

// startFleetHubs starts the fleet's hubs and Mosquitto. On Badger: one
// hub, Mosquitto reading the files it writes, as deployed. On PostgreSQL
// (--fleet-store pg: a server of the harness's own; or a URL): the
// district's workers set up as the deployment guide says — the first one
// started alone, its hub.key and mosquitto/hub.password copied into each
// other's data, every one with the same --district and its own --id, all
// writing the one pair of Mosquitto files (each writes every worker's
// login), with leases on (the default with PostgreSQL and --broker).
func (e *runEnv) startFleetHubs(ctx context.Context, dir, broker, mqAddr string) (_ *fleetHubs, err error) {
	fh := &fleetHubs{}
	defer func() {
		if err != nil {
			fh.stop()
		}
	}()
	launch := func(i int, extra ...string) (*hub, error) {
		hdir := filepath.Join(dir, fmt.Sprintf("hub-%d", i))
		if err := os.MkdirAll(hdir, 0o700); err != nil {
			return nil, err
		}
		h, err := e.launchHub(hdir, broker, fleetHubID(i), append([]string{"--mosquitto-files"}, extra...)...)
		if err != nil {
			return nil, err
		}
		fh.stops = append(fh.stops, func() { e.stopAll(h.proc) })
		fh.hubs = append(fh.hubs, h)
		return h, nil
	}
	exists := func(p *proc, paths ...string) error {
		return poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
			for _, path := range paths {
				if _, err := os.Stat(path); err != nil {
					return false, nil
				}
			}
			return true, nil
		}, p)
	}

	if e.cfg.FleetStore == "" {
		h, err := launch(0)
		if err != nil {
			return nil, err
		}
		fh.files = filepath.Join(h.data, "mosquitto")
		if err := exists(h.proc, filepath.Join(fh.files, "acl")); err != nil {
			return nil, fmt.Errorf("hub's Mosquitto files: %w", err)
		}
	} else {
		fh.store = e.cfg.FleetStore
		if fh.store == FleetStorePG {
			srv, err := testkit.StartPostgresServer()
			if err != nil {
				return nil, fmt.Errorf("start PostgreSQL: %w", err)
			}
			fh.stops = append(fh.stops, srv.Stop)
			if _, fh.store, err = e.newDatabase(ctx, srv); err != nil {
				return nil, err
			}
		}
		fh.files = filepath.Join(dir, "logins")
		if err := os.MkdirAll(fh.files, 0o700); err != nil {
			return nil, err
		}
		args := []string{"--store", fh.store, "--district", fleetDistrict, "--mosquitto-dir", fh.files}
		first, err := launch(0, args...)
		if err != nil {
			return nil, err
		}
		secrets := []string{"hub.key", filepath.Join("mosquitto", "hub.password")}
		if err := exists(first.proc, filepath.Join(first.data, secrets[0]), filepath.Join(first.data, secrets[1]),
			filepath.Join(fh.files, "acl")); err != nil {
			return nil, fmt.Errorf("first worker's key and Mosquitto files: %w", err)
		}
		// Each worker connects to Mosquitto with its own login before it
		// joins the district, so each is started once the one before is
		// up: it writes the files with its own login and those of the
		// workers in hub_workers, and Mosquitto reads them on SIGHUP (a
		// deployment's --mosquitto-reload).
		if fh.mosq, err = e.startSecureMosquitto(ctx, filepath.Join(dir, "mosquitto"), mqAddr, fh.files); err != nil {
			return nil, err
		}
		fh.stops = append(fh.stops, func() { e.stopAll(fh.mosq) })
		if err := first.ready(ctx); err != nil {
			return nil, err
		}
		ids := []string{fleetHubID(0)}
		for i := 1; i < e.cfg.FleetHubs; i++ {
			data := filepath.Join(dir, fmt.Sprintf("hub-%d", i), "hub")
			for _, s := range secrets {
				if err := copyFile(filepath.Join(first.data, s), filepath.Join(data, s)); err != nil {
					return nil, fmt.Errorf("worker %d's %s: %w", i, s, err)
				}
			}
			h, err := launch(i, args...)
			if err != nil {
				return nil, err
			}
			ids = append(ids, fleetHubID(i))
			if err := waitLogins(ctx, fh.files, ids, h.proc); err != nil {
				return nil, err
			}
			if err := syscall.Kill(fh.mosq.PID(), syscall.SIGHUP); err != nil {
				return nil, err
			}
			if err := h.ready(ctx); err != nil {
				return nil, err
			}
		}
		return fh, nil
	}
	if fh.mosq, err = e.startSecureMosquitto(ctx, filepath.Join(dir, "mosquitto"), mqAddr, fh.files); err != nil {
		return nil, err
	}
	fh.stops = append(fh.stops, func() { e.stopAll(fh.mosq) })
	for _, h := range fh.hubs {
		if err := h.ready(ctx); err != nil {
			return nil, err
		}
	}
	return fh, nil
}

// perMillion is b bytes over n events, per million events.
func perMillion(b, n int64) string {
	if n == 0 {
		return "–"
	}
	return fmtMiB(uint64(float64(b) * 1e6 / float64(n)))
}

func fleetHubID(i int) string { return fmt.Sprintf("hub-fleet-%d", i) }

// waitLogins waits until the Mosquitto password file and ACL in dir both
// have every one of users: the hub writes one file after the other, and
// Mosquitto reloaded in between would let a device log in but not publish.
func waitLogins(ctx context.Context, dir string, users []string, procs ...*proc) error {
	var missing string
	err := poll(ctx, time.Minute, 20*time.Millisecond, func() (bool, error) {
		have := map[string]int{}
		pw, err := os.ReadFile(filepath.Join(dir, "passwd"))
		if err != nil {
			return false, nil
		}
		for _, line := range strings.Split(string(pw), "\n") {
			if u, _, ok := strings.Cut(line, ":"); ok {
				have[u] |= 1
			}
		}
		acl, err := os.ReadFile(filepath.Join(dir, "acl"))
		if err != nil {
			return false, nil
		}
		for _, line := range strings.Split(string(acl), "\n") {
			if u, ok := strings.CutPrefix(line, "user "); ok {
				have[strings.TrimSpace(u)] |= 2
			}
		}
		for _, u := range users {
			if have[u] != 3 {
				missing = u
				return false, nil
			}
		}
		return true, nil
	}, procs...)
	if err != nil {
		return fmt.Errorf("no login for %s in Mosquitto's password file and ACL: %w", missing, err)
	}
	return nil
}

// copyFile copies src to dst (mode 0600), making dst's directory.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// storedEvents counts the fleet's events (devices prefix-*) in the
// workers' PostgreSQL and the database's size: the events table and all
// tables.
func storedEvents(ctx context.Context, u, prefix string) (n, evBytes, allBytes int64, err error) {
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("connect to the workers' PostgreSQL: %w", err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, `SELECT count(*) FROM events WHERE device LIKE $1`, prefix+"-%").Scan(&n); err != nil {
		return 0, 0, 0, fmt.Errorf("count stored events: %w", err)
	}
	evBytes, allBytes, err = dbSize(ctx, c)
	return n, evBytes, allBytes, err
}

// siteLeases counts the live site leases (by the database's clock) of
// owner and of every other worker.
func siteLeases(ctx context.Context, u, owner string) (mine, others int, err error) {
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return 0, 0, fmt.Errorf("connect to the workers' PostgreSQL: %w", err)
	}
	defer c.Close(context.Background())
	err = c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE owner = $1), count(*) FILTER (WHERE owner <> $1)
		FROM site_leases WHERE expires_at > now()`, owner).Scan(&mine, &others)
	if err != nil {
		return 0, 0, fmt.Errorf("count site leases: %w", err)
	}
	return mine, others, nil
}
