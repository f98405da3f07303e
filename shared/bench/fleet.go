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

	"linli/shared/test/fleet"
	"linli/shared/test/process"
)

// fleetRate is the steady load of the fleet scenario, over all edges.
const fleetRate = 1000.0

// fleetScale is scenario 11: a fleet of enrolled, signing edges (5,000
// over 500 sites with --long, 500 over 50 otherwise) in the harness
// process, behind Mosquitto with the logins and ACLs the hub writes, to
// --fleet-hubs hubs. Phases: (a) a steady 1,000 ev/s; (b) Mosquitto
// restarted, every edge reconnecting at once with what it wrote meanwhile;
// (c) one hub killed during the load, with more than one hub.
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

	// The hubs first: Mosquitto reads the password file and ACL the first
	// one writes (hubs sharing a store write the same ones).
	hubs := make([]*hub, max(1, e.cfg.FleetHubs))
	for i := range hubs {
		extra := []string{"--mosquitto-files"}
		if e.cfg.FleetStore != "" {
			extra = append(extra, "--store", e.cfg.FleetStore)
		}
		hdir := filepath.Join(dir, fmt.Sprintf("hub-%d", i))
		if err := os.MkdirAll(hdir, 0o700); err != nil {
			return err
		}
		if hubs[i], err = e.launchHub(hdir, broker, fmt.Sprintf("hub-fleet-%d", i), extra...); err != nil {
			return err
		}
		defer e.stopAll(hubs[i].proc)
	}
	for _, h := range hubs {
		if err := poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
			_, err := os.Stat(filepath.Join(h.data, "mosquitto", "acl"))
			return err == nil, err
		}, h.proc); err != nil {
			return fmt.Errorf("hub's Mosquitto files: %w", err)
		}
	}
	// One hub: Mosquitto reads its files, as deployed. Several: each hub
	// writes its own login, so Mosquitto reads their union.
	files := filepath.Join(hubs[0].data, "mosquitto")
	if len(hubs) > 1 {
		files = filepath.Join(dir, "logins")
		if err := mergeLogins(hubs, files); err != nil {
			return err
		}
	}
	mosq, err := e.startSecureMosquitto(ctx, filepath.Join(dir, "mosquitto"), mqAddr, files)
	if err != nil {
		return err
	}
	defer func() { e.stopAll(mosq) }()
	for _, h := range hubs {
		if err := h.ready(ctx); err != nil {
			return err
		}
	}
	h0 := hubs[0]

	t0 := time.Now()
	fl, err := fleet.Enroll(ctx, fleet.Config{Hub: h0.url, Token: h0.token, Broker: broker, Dir: filepath.Join(dir, "edges"),
		Edges: edges, Sites: sites, Prefix: "fl", Parallel: 32, Log: e.log})
	if err != nil {
		return err
	}
	enrollTook := time.Since(t0)
	e.log.Info("fleet enrolled", "edges", edges, "took", enrollTook.Round(time.Millisecond))
	if len(hubs) > 1 {
		if err := mergeLogins(hubs, files); err != nil {
			return err
		}
	}
	// Mosquitto reads the new logins on SIGHUP, as its systemd unit's
	// reload does.
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

	// (c) One hub killed during the load.
	killedMem := ""
	if len(hubs) < 2 {
		e.res.add(Row{Scenario: sc, Figure: "(c) one hub killed during the load", Value: "not measured: needs workers (--fleet-hubs > 1 once hubs share sites)", Verdict: Info})
	} else {
		killed := hubs[len(hubs)-1]
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
		n := <-done
		if err := fl.WaitCaughtUp(ctx, 5*time.Minute); err != nil {
			return fmt.Errorf("after a hub was killed: %w", err)
		}
		lat := fl.Latencies()
		e.res.add(Row{Scenario: sc, Figure: "(c) one hub killed half-way: events written; ack p99; every edge caught up after the kill",
			Value: fmt.Sprintf("%s; %s; %.1f s", groupThousands(n), fmtMs(fleet.Percentile(lat, 0.99)), time.Since(kt).Seconds()), Verdict: Info})
		hubs = hubs[:len(hubs)-1]
		killedMem = fmt.Sprintf("; the killed hub %s peak", fmtMiB(killedPeak))
	}

	// Memory of each hub; then the store each holds, measured once the
	// hub has stopped cleanly (a running Badger's files include its
	// write-ahead log and preallocated space).
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
		size, err := process.DiskUsage(filepath.Join(h.data, "store"))
		if err != nil {
			return err
		}
		store = append(store, fmt.Sprintf("%.0f MiB (%.1f MiB for %s events)", float64(size)/(1<<20)/float64(st.Acked)*1e6,
			float64(size)/(1<<20), groupThousands(int64(st.Acked))))
	}
	storeFig := "store on disk per million events (Badger after a clean stop, with the fleet's device records)"
	storeVal := strings.Join(store, "; ")
	if e.cfg.FleetStore != "" {
		storeFig, storeVal = "store size per million events", "not measured: the hubs' --store is "+redactURL(e.cfg.FleetStore)
	}
	e.res.add(Row{Scenario: sc, Figure: storeFig, Value: storeVal, Verdict: Info})
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
		"The store is each hub's Badger directory after a clean stop, per million events acked (%s in this run). "+
		"`--fleet-hubs N` starts N hubs on the broker, `--fleet-store URL` gives each `--store URL`.",
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

// mergeLogins writes into dir the union of the hubs' Mosquitto password
// files and ACLs, each user once (the first hub's entry wins: hubs that
// share a registry write the same device entries).
func mergeLogins(hubs []*hub, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var passwd, acl strings.Builder
	users, aclUsers := map[string]bool{}, map[string]bool{}
	for _, h := range hubs {
		src := filepath.Join(h.data, "mosquitto")
		pw, err := os.ReadFile(filepath.Join(src, "passwd"))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(pw), "\n") {
			if user, _, ok := strings.Cut(line, ":"); ok && !users[user] {
				users[user] = true
				passwd.WriteString(line + "\n")
			}
		}
		a, err := os.ReadFile(filepath.Join(src, "acl"))
		if err != nil {
			return err
		}
		// Blocks begin with "user NAME" and end at a blank line.
		for _, block := range strings.Split(string(a), "\n\n") {
			var lines []string
			for _, l := range strings.Split(block, "\n") {
				if !strings.HasPrefix(l, "#") {
					lines = append(lines, l)
				}
			}
			block = strings.Join(lines, "\n")
			f := strings.Fields(block)
			if len(f) < 2 || f[0] != "user" || aclUsers[f[1]] {
				continue
			}
			aclUsers[f[1]] = true
			acl.WriteString(strings.TrimSpace(block) + "\n\n")
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd.String()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "acl"), []byte(acl.String()), 0o600)
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
