// Package agent wires an edge together: config, outbox, uplink and HTTP API,
// with one Run that stops everything it started.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	_ "time/tzdata" // a board's OS may lack the zone database; the site's zone must still load

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"linli/edge/api"
	"linli/edge/diskguard"
	"linli/edge/enroll"
	"linli/edge/gateway"
	"linli/edge/kiosk"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/edge/seats"
	"linli/edge/store"
	"linli/edge/uplink"
	"linli/shared/config"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/identity"
	"linli/shared/kv"
	"linli/shared/ready"
	"linli/shared/wire"
)

var _ uplink.Log = (*outbox.Log)(nil)
var _ api.Log = (*outbox.Log)(nil)

// Main runs the edge program with args and env and returns its exit code:
// 0 after a clean stop, 2 for bad settings, 1 for failures at run time.
func Main(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "enroll" {
		return enroll.Main(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "status" {
		return statusMain(ctx, args[1:], stdout, stderr)
	}
	var cfg Config
	set := newSet(&cfg, stdout)
	if err := set.Load(args, env); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "linli-edge: %v\n", err)
		return 2
	}
	defaultData(&cfg)
	if err := adoptIdentity(&cfg, set); err != nil {
		fmt.Fprintf(stderr, "linli-edge: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "linli-edge: %v\n", err)
		return 2
	}
	if err := testKnobs(&cfg, env); err != nil {
		fmt.Fprintf(stderr, "linli-edge: %v\n", err)
		return 2
	}
	// The store's profile sizes the heap too; GOMEMLIMIT, when set, wins.
	_, pinned := config.LookupEnv(env, "GOMEMLIMIT")
	if lim := kv.Profile(cfg.Profile).MemoryLimit(); lim > 0 && !pinned {
		debug.SetMemoryLimit(lim)
	}
	level, _ := parseLevel(cfg.LogLevel) // validated above
	log := slog.New(logHandler(stderr, cfg.LogFormat, level)).With("device", cfg.ID)
	a, err := Start(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "linli-edge: %v\n", err)
		var ce *config.Error
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stdout, "linli-edge %s (%s) serving http://%s\n", cfg.ID, cfg.Role, a.Addr())
	if err := a.Wait(); err != nil {
		fmt.Fprintf(stderr, "linli-edge: %v\n", err)
		return 1
	}
	return 0
}

// Agent is a running edge.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	outbox  *outbox.Log
	uplink  *uplink.Uplink
	replica *replica.Replica
	seats   *seats.Seats
	gateway *gateway.Gateway // gateways only
	guard   *diskguard.Guard
	srv     *http.Server
	ln      net.Listener

	// Set while Start runs, kept for the goroutines run starts.
	now   func() time.Time // the wall clock, offset in tests
	ident *atomic.Pointer[enroll.Identity]
	idw   *identityWatch
	trust *trustWatch
	index *kiosk.Index // kiosks only
	undo  undo         // closes what Start has opened so far if a later phase fails

	cancel context.CancelFunc
	err    error         // the first failure; set before done closes
	done   chan struct{} // closed once the edge has stopped
}

// Start brings the edge up in phases, in this order: openStores (the
// store and the outbox in it), listen (the HTTP port), startTransport
// (the replica of the hub's state, the identity and the uplink),
// buildServices (the edge API and the role's parts: seats, the
// resident UI, the gateway), buildHTTP (the routes and the server) and
// run (the goroutine group and its shutdown). Each phase registers the
// close of what it opens; a start that fails in any phase closes all of
// it, newest first, and leaves the HTTP port free and the store
// unlocked. It returns a *config.Error when a setting (the data dir, the
// listen address) is unusable. The edge serves residents whether or not
// the broker is reachable.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Agent, err error) {
	defaultData(&cfg)
	if cfg.SitePlan != "" && cfg.plan == nil { // a Config not through Validate
		if err := cfg.loadPlan(); err != nil {
			return nil, err
		}
	}
	if err := checkDataDir(cfg.Data); err != nil {
		return nil, err
	}
	guard, err := newGuard(cfg, log)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, guard: guard, now: time.Now, done: make(chan struct{})}
	if off := cfg.clockOffset; off != 0 {
		a.now = func() time.Time { return time.Now().Add(off) }
		log.Warn("test-only wall clock offset in force", "offset", off)
	}
	if cfg.unsafeNoSync {
		log.Warn("test-only: Badger SyncWrites and the journal's sync are OFF; a 2xx no longer means the event is on disk")
	}
	if cfg.unsafeNoJournalSync {
		log.Warn("test-only: the outbox journal's sync is OFF; a 2xx no longer means the event is on disk")
	}
	defer func() {
		if err != nil {
			a.undo.run()
		}
	}()
	if err := a.openStores(); err != nil {
		return nil, err
	}
	if err := a.listen(); err != nil {
		return nil, err
	}
	if err := a.startTransport(); err != nil {
		return nil, err
	}
	w, err := a.buildServices()
	if err != nil {
		return nil, err
	}
	a.buildHTTP(w)
	a.run(ctx)
	a.undo = nil // shutdown closes what is open from here on
	return a, nil
}

// openStores opens the edge's one store (the outbox and every other
// package keep their records in it, each under its own key prefixes) and
// the outbox.
func (a *Agent) openStores() (err error) {
	cfg, log := a.cfg, a.log
	a.store, err = store.Open(store.Options{Dir: cfg.Data, Profile: kv.Profile(cfg.Profile), GCInterval: cfg.GCInterval,
		Logger: log.With("component", "store"), UnsafeNoSync: cfg.unsafeNoSync})
	if err != nil {
		if errors.Is(err, kv.ErrLocked) {
			return config.Errorf("data", "%v", err)
		}
		return fmt.Errorf("open store: %w", err)
	}
	a.undo.push(func() { a.closeAfterFailedStart(a.store) })
	a.outbox, err = outbox.Open(a.store.DB(), outbox.Options{
		Device: cfg.ID, Retention: cfg.Retention, RetentionInterval: cfg.GCInterval, Now: a.now, Logger: log,
		Journal:             filepath.Join(cfg.Data, "journal"),
		UnsafeNoJournalSync: cfg.unsafeNoSync || cfg.unsafeNoJournalSync,
	})
	if err != nil {
		if errors.Is(err, outbox.ErrDeviceMismatch) {
			return config.Errorf("data", "%v", err)
		}
		return fmt.Errorf("open outbox: %w", err)
	}
	a.undo.push(func() { a.closeAfterFailedStart(a.outbox) })
	a.outbox.SetGuard(a.guard)
	return nil
}

// listen takes the HTTP port. Unlike the hub, the edge takes it as soon
// as its store is open; every later phase that fails closes it again.
func (a *Agent) listen() (err error) {
	a.ln, err = net.Listen("tcp", a.cfg.HTTP)
	if err != nil {
		return config.Errorf("http", "cannot listen on %s: %v", a.cfg.HTTP, err)
	}
	a.undo.push(func() { a.closeAfterFailedStart(a.ln) })
	return nil
}

// startTransport opens the replica of the hub's state, loads the
// identity (numbering above a replaced device's events) and builds the
// uplink; the uplink connects only once run starts it.
func (a *Agent) startTransport() (err error) {
	cfg, log, ob := a.cfg, a.log, a.outbox
	a.replica, err = replica.Open(a.store.DB(), cfg.Site, cfg.ID, log.With("component", "replica"))
	if err != nil {
		return err
	}
	a.ident = new(atomic.Pointer[enroll.Identity])
	if id, err := enroll.Load(cfg.Data); err == nil {
		a.ident.Store(id)
		// A device that replaced another under this id numbers above
		// everything its predecessor may still deliver.
		if moved, err := ob.Rebase(id.SeqBase); err != nil {
			return err
		} else if moved {
			log.Info("numbering events above the replaced device's", "seq_base", id.SeqBase)
		} else if last, _, _ := ob.Cursors(); last < id.SeqBase {
			log.Warn("this edge replaced another under its id but holds unsent events numbered like its predecessor's; they may collide", "seq_base", id.SeqBase)
		}
	} else if !errors.Is(err, enroll.ErrNotEnrolled) {
		log.Error("identity unreadable; running unenrolled", "err", err)
	}
	ident, rep := a.ident, a.replica
	a.idw = newIdentityWatch(ident, log.With("component", "identity"))
	a.trust = newTrustWatch(cfg.Data, ident, log.With("component", "trust"))
	rep.SetVerifier(func(payload []byte) ([]byte, bool, error) { return verifyDown(ident.Load(), payload) })
	rep.SetRole(cfg.Role)
	a.uplink = uplink.New(ob, rep, uplink.Options{
		Creds:  func() uplink.Creds { return creds(ident.Load(), log) },
		Broker: cfg.Broker, Site: cfg.Site, Device: cfg.ID, Role: cfg.Role, Version: Version,
		Username: cfg.Username, Password: cfg.Password,
		BatchEvents: cfg.BatchEvents, BatchBytes: cfg.BatchBytes, Window: cfg.Window,
		Compress: cfg.Compress, AckTimeout: cfg.AckTimeout, KeepAlive: cfg.KeepAlive,
		BackoffMax: cfg.BackoffMax, Logger: log.With("component", "uplink"), Now: a.now,
		OnIdentity: a.idw.Hint, Hold: a.idw.Retired, OnUntrusted: a.trust.Untrusted,
	})
	return nil
}

// wiring is what buildServices hands buildHTTP: the edge API and the
// roles' routes on it.
type wiring struct {
	api    *api.API
	kiosk  *kiosk.Handlers
	gw     *gateway.Writes
	panics prometheus.Counter
}

// buildServices builds the edge API with its metrics and the parts of
// the edge's role: a kiosk's seats, resident UI, index and numbers, a
// gateway's drivers and rules.
func (a *Agent) buildServices() (_ wiring, err error) {
	cfg, log, ob, rep, up, ident := a.cfg, a.log, a.outbox, a.replica, a.uplink, a.ident
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerMetrics(reg, ob, up, a.guard)
	reg.MustRegister(rep.Collectors()...)
	reg.MustRegister(a.trust.refused)
	panics := prometheus.NewCounter(prometheus.CounterOpts{Name: "linli_edge_http_panics_total",
		Help: "HTTP handlers that panicked (answered 500, logged with the stack)."})
	reg.MustRegister(panics)
	mirror := &kiosk.Mirror{Rep: rep, Own: ob, Building: cfg.Building}
	edgeAPI := &api.API{
		Role: cfg.Role, Log: ob, Sync: up, Identity: a.idw.State, Replica: mirror, Registry: reg, Logger: log.With("component", "http"),
		Ready:  ready.Handler((&ready.StoreProbe{DB: a.store.DB}).Check, diskReady(a.guard), uplinkReady(up)),
		Detail: func() api.SyncDetail { return syncDetail(ob, a.guard, log) },
		// A site that pseudonymises: residents are recorded by the site's
		// keyed hash from the moment this edge is enrolled.
		Pseudonym: func(resident string) string {
			if f := ident.Load().Pseudonym(); f != nil {
				return f(resident)
			}
			return resident
		},
	}
	w := wiring{api: edgeAPI, panics: panics,
		kiosk: &kiosk.Handlers{API: edgeAPI}, // the kiosk's routes; a gateway answers them 404
		gw:    &gateway.Writes{API: edgeAPI}} // the gateway's writes; a kiosk answers them 404
	k, gw := w.kiosk, w.gw
	a.idw.relogin = up.Reconnect
	a.trust.reconnect = up.Reconnect
	rep.AfterApply(a.trust.changed)
	a.trust.resume(rep)
	if cfg.Role == api.RoleKiosk {
		a.seats = seats.New(a.store.DB(), ob, rep, log.With("component", "seats"))
		edgeAPI.Seats, mirror.Mine = a.seats, a.seats
		// The resident web UI, its settings and the index of what each
		// resident did here.
		var ui *kiosk.UI
		a.index, err = kiosk.NewIndex(a.store.DB(), ob, log.With("component", "index"))
		if err == nil {
			ui, err = kiosk.NewUI()
		}
		if err != nil {
			return w, err
		}
		edgeAPI.UI, k.Residents = ui, a.index
		rep.AfterApply(a.index.Forget)                        // the hub's deletion requests
		kinds, _ := kiosk.ParseAlarmKinds(cfg.ResidentAlarms) // validated
		code := cmp.Or(cfg.KioskCode, kiosk.DefaultKioskCode(cfg.Building, cfg.ID))
		if k.Numbers, err = kiosk.NewNumbers(a.store.DB(), code); err != nil {
			return w, err
		}
		k.Kiosk = &kiosk.Info{Device: cfg.ID, Site: cfg.Site, Building: cfg.Building, IdleTimeout: cfg.IdleTimeout, Version: Version,
			TimeZone: cfg.TimeZone, Plan: cfg.plan, PublicURL: cfg.PublicURL, ReopenWindow: cfg.ReopenWindow, OfficePhone: cfg.OfficePhone, Code: code}
		mirror.AlarmKinds = kinds
		k.Alarms = kiosk.NewAlarmFeed(mirror)
		rep.AfterApply(k.Alarms.Changed) // pushed to the screens as soon as the hub's change is applied
	}
	if cfg.Role == api.RoleGateway {
		a.gateway, err = gateway.New(gateway.Options{Config: cfg.Gateway, Site: cfg.Site, Building: cfg.Building,
			Log: ob, DB: a.store.DB(), Uplink: up, Replica: rep, Registry: reg, Logger: log.With("component", "gateway")})
		if err != nil {
			return w, err
		}
		gw.CardKey = a.gateway.CardKey
		gw.Rules, gw.Building = a.gateway, cfg.Building
	}
	return w, nil
}

// buildHTTP mounts the roles' routes and builds the server for the
// listener taken earlier.
func (a *Agent) buildHTTP(w wiring) {
	w.kiosk.Mount()
	w.gw.Mount()
	a.srv = &http.Server{
		Handler:           httpx.Recover(a.handler(w.api), a.log.With("component", "http"), w.panics.Inc),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if w.kiosk.Alarms != nil {
		a.srv.RegisterOnShutdown(w.kiosk.Alarms.Close) // Shutdown waits for streams otherwise
	}
}

// run starts the long-running parts in one group and the shutdown that
// waits for it to end.
func (a *Agent) run(ctx context.Context) {
	runCtx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	// The first of these to fail stops the others and the edge.
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error {
		if err := a.uplink.Run(gctx); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := a.guard.Run(gctx, a.outbox); err != nil {
			return fmt.Errorf("disk guard: %w", err)
		}
		return nil
	})
	g.Go(func() error { a.replica.Run(gctx); return nil })
	g.Go(func() error { a.idw.run(gctx); return nil })
	g.Go(func() error { a.trust.run(gctx); return nil })
	if a.ident.Load() == nil {
		g.Go(func() error { a.awaitEnrollment(gctx, a.ident); return nil })
	}
	if a.seats != nil {
		g.Go(func() error { a.seats.Run(gctx); return nil })
	}
	a.replica.AfterApply(a.eraseResidents)
	if a.gateway != nil {
		g.Go(func() error {
			if err := a.gateway.Run(gctx); err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
			return nil
		})
	}
	if a.index != nil {
		g.Go(func() error { a.index.Run(gctx); return nil })
	}
	g.Go(func() error {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	go a.shutdown(gctx, g)
}

// syncDetail is the oldest unacked record and the disk guard's state.
func syncDetail(ob *outbox.Log, g *diskguard.Guard, log *slog.Logger) api.SyncDetail {
	var d api.SyncDetail
	if ts, err := ob.OldestUnacked(); err != nil {
		log.Warn("read the oldest unacked event", "err", err)
	} else if ts != 0 {
		d.OldestPending = ts.Time()
	}
	if first, err := ob.FirstHeld(); err != nil {
		log.Warn("read the oldest held event", "err", err)
	} else {
		d.FirstHeld = first
	}
	if h, ok := ob.Horizon(); ok {
		d.Horizon = &h
	}
	st := g.Stats()
	d.DiskFreeBytes, d.DiskReserveBytes = st.Free, st.Reserve
	if err := g.Refusing(); err != nil {
		d.DiskRefusing = err.Error()
	}
	return d
}

// diskReady: an edge whose disk guard refuses writes cannot take what
// residents record.
func diskReady(g *diskguard.Guard) ready.Check {
	return func() ready.Result {
		if err := g.Refusing(); err != nil {
			return ready.Result{Reason: "disk: " + err.Error()}
		}
		return ready.Result{}
	}
}

// uplinkReady: an edge without its hub session still serves residents and
// records durably, so offline is a warning, not a reason.
func uplinkReady(up *uplink.Uplink) ready.Check {
	return func() ready.Result {
		if !up.Connected() {
			return ready.Result{Warning: "offline: no session with the hub's broker; writes are kept on this edge's disk and sent when it is back"}
		}
		return ready.Result{}
	}
}

// closeAfterFailedStart closes one thing Start had opened before it
// failed; the failure Start reports matters more than this one, which
// is logged.
func (a *Agent) closeAfterFailedStart(c io.Closer) {
	if err := c.Close(); err != nil {
		a.log.Error("close after failed start", "err", err)
	}
}

// handler is the edge's HTTP API; a gateway adds its doors, list, alarms
// and sensors to it.
func (a *Agent) handler(edgeAPI *api.API) http.Handler {
	if a.gateway == nil {
		return edgeAPI.Handler()
	}
	return a.gateway.Routes(edgeAPI.Handler())
}

// shutdown stops the edge once its group's context ends (Stop, the
// parent context, or the first goroutine to fail): HTTP stops taking
// requests first, then the pipelines end, then the outbox and the store close.
func (a *Agent) shutdown(ctx context.Context, g *errgroup.Group) {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		a.log.Warn("http shutdown", "err", err)
	}
	err := g.Wait()
	if cerr := a.outbox.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close outbox: %w", cerr)
	}
	if cerr := a.store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	a.log.Info("edge stopped")
	a.err = err
	close(a.done)
}

// eraseResidents carries out deletion requests from the hub: the
// resident's records in the outbox and the kiosk's own indexes are
// anonymised with the hub's token.
func (a *Agent) eraseResidents(cs []wire.Change) {
	for _, c := range cs {
		if c.Entity != wire.EntityResident || c.Deleted {
			continue
		}
		var token string
		if err := event.UnmarshalOwn(c.Body, &token); err != nil || !strings.HasPrefix(token, event.ErasedPrefix) {
			a.log.Error("bad erasure from the hub", "err", err)
			continue
		}
		n, err := a.outbox.Rewrite(func(ev *event.Event) (event.Body, bool) {
			b, err := ev.Decode()
			if err != nil {
				return nil, false
			}
			return event.Anonymise(b, c.ID, token)
		})
		if err != nil {
			a.log.Error("erase resident from the outbox", "err", err)
		}
		if a.seats != nil {
			if err := a.seats.Erase(c.ID, token); err != nil {
				a.log.Error("erase resident from seat ledgers", "err", err)
			}
		}
		a.log.Info("resident erased on request of the hub", "events", n)
	}
}

// adoptIdentity takes id, site and role from the data dir's identity when
// the edge is enrolled; a setting given explicitly that disagrees is an
// error, not silently overridden.
func adoptIdentity(cfg *Config, set *config.Set) error {
	id, err := enroll.Load(cfg.Data)
	if errors.Is(err, enroll.ErrNotEnrolled) {
		return nil
	}
	if err != nil {
		return config.Errorf("data", "%v", err)
	}
	for _, f := range []struct {
		name     string
		cur      *string
		enrolled string
	}{{"id", &cfg.ID, id.ID}, {"site", &cfg.Site, id.Site}, {"role", &cfg.Role, id.Role}} {
		if set.IsSet(f.name) && *f.cur != f.enrolled {
			return config.Errorf(f.name, "%q, but the data dir %s is enrolled as %s %q", *f.cur, cfg.Data, f.name, f.enrolled)
		}
		*f.cur = f.enrolled
	}
	if !set.IsSet("broker") && id.Broker != "" {
		cfg.Broker = id.Broker // the hub said where its broker is
	}
	return nil
}

// creds are the session credentials of an enrolled edge, or none.
func creds(id *enroll.Identity, log *slog.Logger) uplink.Creds {
	if id == nil {
		return uplink.Creds{}
	}
	tlsConf, err := id.TLSConfig()
	if err != nil {
		log.Error("identity TLS settings", "err", err)
	}
	return uplink.Creds{Username: id.MQTTUsername, Password: id.MQTTPassword, TLS: tlsConf, Base: id.SeqBase, CA: id.Fingerprints(),
		Sign:   func(p []byte) ([]byte, error) { return identity.Sign(id.Key, id.ID, p) },
		Verify: func(p []byte) ([]byte, error) { return identity.Open(p, id.HubPub, id.HubID) }}
}

// verifyDown checks the hub's signature on a downlink message. An edge not
// enrolled yet has no hub key: it reads the message as unverified.
func verifyDown(id *enroll.Identity, payload []byte) ([]byte, bool, error) {
	if id == nil {
		if identity.IsSigned(payload) {
			p, err := identity.Payload(payload)
			return p, false, err
		}
		return payload, false, nil
	}
	p, err := identity.Open(payload, id.HubPub, id.HubID)
	return p, err == nil, err
}

// awaitEnrollment notices an identity written by `linli-edge enroll` while
// the edge runs, and restarts the hub session with it.
func (a *Agent) awaitEnrollment(ctx context.Context, ident *atomic.Pointer[enroll.Identity]) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id, err := enroll.Load(a.cfg.Data)
		if errors.Is(err, enroll.ErrNotEnrolled) {
			continue
		}
		if err != nil {
			a.log.Warn("identity unreadable", "err", err)
			continue
		}
		if id.ID != a.cfg.ID || id.Site != a.cfg.Site {
			a.log.Error("enrolled as another device than this data dir holds; restart the edge to see why",
				"enrolled", id.ID, "running", a.cfg.ID)
			return
		}
		ident.Store(id)
		a.log.Info("enrolled; reconnecting with the new identity", "site", id.Site)
		a.uplink.Reconnect()
		return
	}
}

// Addr is the HTTP listen address (useful with port 0).
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// Outbox exposes the event log for tests and tools in this module.
func (a *Agent) Outbox() *outbox.Log { return a.outbox }

// Store exposes the edge's store for tests and tools in this module.
func (a *Agent) Store() *store.Store { return a.store }

// Uplink exposes the hub session.
func (a *Agent) Uplink() *uplink.Uplink { return a.uplink }

// Stop cancels the agent and waits for it.
func (a *Agent) Stop() error {
	a.cancel()
	return a.Wait()
}

// Wait blocks until the agent has stopped and returns the first failure.
func (a *Agent) Wait() error {
	<-a.done
	return a.err
}

// newGuard builds the disk guard from the validated settings; a reserve
// the data disk cannot hold is a bad setting.
func newGuard(cfg Config, log *slog.Logger) (*diskguard.Guard, error) {
	reserve, err := diskguard.ParseSize(cfg.DiskReserve)
	if err != nil {
		return nil, config.Errorf("disk-reserve", "%v", err)
	}
	telem, err := diskguard.ParseSize(cfg.DiskTelemetryReserve)
	if err != nil {
		return nil, config.Errorf("disk-telemetry-reserve", "%v", err)
	}
	g, err := diskguard.New(diskguard.Options{Dir: cfg.Data, Reserve: reserve, TelemetryReserve: telem,
		Logger: log.With("component", "diskguard")})
	if errors.Is(err, diskguard.ErrReserveTooLarge) {
		return nil, config.Errorf("disk-reserve", "%v", err)
	}
	if err != nil {
		return nil, config.Errorf("data", "%v", err)
	}
	return g, nil
}

// logHandler writes log lines as text (key=value) or one JSON object each.
func logHandler(w io.Writer, format string, level slog.Level) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	}
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

func registerMetrics(reg *prometheus.Registry, ob *outbox.Log, up *uplink.Uplink, g *diskguard.Guard) {
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("linli_edge_backlog_events", "Events stored on the edge and not yet acked by the hub.",
		func() float64 { return float64(ob.Stats().Pending) })
	gauge("linli_edge_oldest_unacked_age_seconds", "Age of the oldest event the hub has not acked (0 when none).",
		func() float64 {
			ts, err := ob.OldestUnacked()
			if err != nil || ts == 0 {
				return 0
			}
			return max(0, time.Since(ts.Time()).Seconds())
		})
	gauge("linli_edge_last_seq", "Sequence number of the newest event written.", func() float64 { return float64(ob.Stats().LastSeq) })
	gauge("linli_edge_acked_seq", "The hub's high-water mark as last acked.", func() float64 { return float64(ob.Stats().AckedSeq) })
	gauge("linli_edge_connected", "1 while the hub session is up.", func() float64 {
		if up.Connected() {
			return 1
		}
		return 0
	})
	counter("linli_edge_store_commits_total", "Synced group commits of the outbox.", func() float64 { return float64(ob.Stats().Commits) })
	gauge("linli_edge_disk_free_bytes", "Free space on the data disk at the disk guard's last reading.", func() float64 { return float64(g.Stats().Free) })
	gauge("linli_edge_disk_reserve_bytes", "Free space kept back on the data disk: below it writes are refused.", func() float64 { return float64(g.Stats().Reserve) })
	gauge("linli_edge_disk_refusing", "1 while the disk guard refuses writes (free space below the reserve).", func() float64 {
		if g.Refusing() != nil {
			return 1
		}
		return 0
	})
	gauge("linli_edge_last_sync_timestamp_seconds", "When the hub last acked (Unix time; 0 before the first ack).", func() float64 {
		if t := up.LastSync(); !t.IsZero() {
			return float64(t.UnixNano()) / 1e9
		}
		return 0
	})
	counter("linli_edge_disk_refused_total", "Writes refused (507) to keep the disk reserve.", func() float64 { return float64(g.Stats().Refused) })
	counter("linli_edge_acked_dropped_before_backup_total", "Acked events deleted for disk room before a backup of the hub covered them (a hub restored from its last backup reports them lost).",
		func() float64 { return float64(ob.Stats().AckedDroppedBeforeBackup) })
	counter("linli_edge_telemetry_dropped_total", "Unacked telemetry events dropped to protect the disk (each drop recorded by a gap event).", func() float64 { return float64(g.Stats().Dropped) })
	for _, c := range []struct {
		name, help string
		f          func(uplink.Stats) uint64
	}{
		{"linli_edge_uplink_connects_total", "MQTT sessions established.", func(s uplink.Stats) uint64 { return s.Connects }},
		{"linli_edge_uplink_connect_errors_total", "Failed MQTT connection attempts.", func(s uplink.Stats) uint64 { return s.ConnectErrs }},
		{"linli_edge_uplink_batches_total", "Event batches published.", func(s uplink.Stats) uint64 { return s.Batches }},
		{"linli_edge_uplink_events_total", "Events published, resends included.", func(s uplink.Stats) uint64 { return s.Events }},
		{"linli_edge_uplink_bytes_total", "Batch payload bytes published.", func(s uplink.Stats) uint64 { return s.Bytes }},
		{"linli_edge_uplink_acks_total", "End-to-end acks that advanced the cursor.", func(s uplink.Stats) uint64 { return s.Acks }},
		{"linli_edge_uplink_resends_total", "Windows resent after acks stalled.", func(s uplink.Stats) uint64 { return s.Resends }},
		{"linli_edge_uplink_priority_batches_total", "Alarm batches sent ahead of the backlog.", func(s uplink.Stats) uint64 { return s.Priority }},
		{"linli_edge_acks_refused_total", "Acks ignored: not signed by the hub, for another device, or naming a seq never written here.", func(s uplink.Stats) uint64 { return s.AcksRefused }},
	} {
		counter(c.name, c.help, func() float64 { return float64(c.f(up.Stats())) })
	}
}
