// Package server wires the hub together: store, broker or broker client,
// ingest and HTTP API, with one lifecycle.
package server

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"linli/hub/api"
	"linli/hub/backup"
	"linli/hub/broker"
	"linli/hub/brokerclient"
	"linli/hub/downlink"
	"linli/hub/ingest"
	"linli/hub/lease"
	"linli/hub/operators"
	"linli/hub/pgstore"
	"linli/hub/pki"
	"linli/hub/registry"
	"linli/hub/retention"
	"linli/hub/state"
	"linli/hub/store"
	"linli/hub/stream"
	"linli/hub/web"
	"linli/shared/config"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/httpx"
	"linli/shared/identity"
	"linli/shared/kv"
	"linli/shared/ready"
	"linli/shared/wire"
)

// Main runs the hub program and returns its exit code: 0 after a clean
// stop, 2 for bad settings, 1 for failures at run time.
func Main(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "device" {
		return deviceMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "status" {
		return statusMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "ca" {
		return caMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "restore" {
		return restoreMain(args[1:], stdout, stderr)
	}
	var cfg Config
	set := newSet(&cfg, stdout)
	if err := set.Load(args, env); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "linli-hub: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "linli-hub: %v\n", err)
		return 2
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub: %v\n", err)
		return 2
	}
	log := slog.New(logHandler(stderr, cfg.LogFormat, level))
	applyMemoryLimit(cfg.MemoryLimit, env, log)
	applyGCPercent(cfg.Store, env, log)
	h, err := Start(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "linli-hub: %v\n", err)
		var ce *config.Error
		var tn *store.TooNewError
		if errors.As(err, &ce) || errors.As(err, &tn) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stdout, "linli-hub serving %s (mqtt %s); admin token in %s\n",
		h.HTTPURL(), h.brokerURL(), filepath.Join(cfg.Data, "admin.token"))
	// SIGHUP reloads the TLS certificate (systemctl reload linli-hub).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-h.done:
				return
			case <-hup:
				if err := h.ReloadTLS(); err != nil {
					log.Error("SIGHUP: TLS certificate not reloaded; still serving the previous one", "err", err)
				}
			}
		}
	}()
	if err := h.Wait(); err != nil {
		fmt.Fprintf(stderr, "linli-hub: %v\n", err)
		return 1
	}
	return 0
}

// Hub is a running hub.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store  // the Badger store; nil when the store setting names PostgreSQL
	backend  store.Backend // what the hub's state is kept in: store or pg
	broker   *broker.Broker
	client   *brokerclient.Client
	ingest   *ingest.Ingest
	down     *downlink.Log
	state    *state.State
	registry *registry.Registry
	pg       *pgstore.Store // nil unless the store setting names one
	key      ed25519.PrivateKey
	tls      *pki.Bundle
	certs    *pki.Holder // the server certificate in service, reloaded as its files change
	httpTLS  bool
	mqttTLS  bool
	srv      *http.Server
	ln       net.Listener
	token    string
	backups  *backup.Scheduler // nil without --backup-dir
	expiry   *retention.Loop
	leases   *lease.Manager // nil unless the hub shares its sites (cfg.Leased)
	owned    sync.Map       // site → true: the sites this worker has taken on (with leases)

	// rewriteMosquitto writes the Mosquitto files again (nil without
	// --mosquitto-files); workers lists the worker ids they were last
	// written with.
	rewriteMosquitto func() error
	workers          []string

	// takes are backups reading the store on demand; the store closes
	// after them.
	horizon *store.Horizon
	takeMu  sync.Mutex
	closing bool
	takes   sync.WaitGroup

	transport ingest.Transport // the broker or the client, whichever the hub runs on
	undo      undo             // closes what Start has opened so far if a later phase fails

	cancel context.CancelFunc
	err    error         // the first failure; set before done closes
	done   chan struct{} // closed once the hub has stopped
}

// Start brings the hub up in phases, in this order: openStores (the
// Badger store or, with the store setting, PostgreSQL; the hub key, the device
// registry, TLS material), startTransport (the embedded broker or the
// external broker's client), buildServices (downlink, merged state,
// ingest, backups, retention), buildHTTP (operators, site plans, the API
// and, last, its listener) and run (the goroutine group and its
// shutdown). Each phase registers the close of what it opens; a start
// that fails in any phase closes all of it, newest first, and leaves the
// ports free and the store unlocked.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Hub, err error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, config.Errorf("data", "cannot create %s: %v", cfg.Data, err)
	}
	token, err := adminToken(cfg.Data)
	if err != nil {
		return nil, config.Errorf("data", "%v", err)
	}
	h := &Hub{cfg: cfg, log: log, token: token, done: make(chan struct{})}
	defer func() {
		if err != nil {
			h.undo.run()
		}
	}()
	if err := h.openStores(ctx); err != nil {
		return nil, err
	}
	if err := h.startTransport(ctx); err != nil {
		return nil, err
	}
	if err := h.buildServices(); err != nil {
		return nil, err
	}
	if err := h.buildHTTP(); err != nil {
		return nil, err
	}
	// Loading the merged state and the downlink log decodes what the
	// store holds of years of history, garbage once they are up. The
	// runtime hands freed memory back to the system only slowly, so the
	// hub kept that much more resident for minutes after every start.
	debug.FreeOSMemory()
	h.trimStore()
	h.run(ctx)
	h.undo = nil // shutdown closes what is open from here on
	return h, nil
}

// A running hub gives back its store's mapped table pages whenever its
// file-backed resident memory grew storeTrimSlack past what the last
// trim left, looked at every storeTrimCheck. Badger reads tables through
// memory maps, and every page a read or a compaction touched stayed
// resident until the hub stopped: a compaction of freshly written tables
// left it holding 351 MiB of the tables it wrote, and reads across years
// of history bring back index and data pages in proportion to them. A
// hub at a community's pace rarely passes the slack, so the pages its
// reads use stay; one that did reads them from disk again.
const (
	storeTrimCheck = 5 * time.Second
	storeTrimSlack = 32 << 20
)

// trimStore gives back the pages of the store's table files that opening
// and loading touched. Badger maps every table and, at open, reads each
// one's whole index and bloom filter to check its checksum; those pages
// stayed in the hub's resident memory for as long as it ran, in
// proportion to the history stored (19 MiB at 10,000,000 events). What
// is read again afterwards comes back as it is read, and trimLoop gives
// it back again.
func (h *Hub) trimStore() {
	if h.store == nil {
		return
	}
	dir := h.store.DB().Opts().Dir
	n, err := kv.TrimMapped(dir)
	if err != nil {
		h.log.Warn("give back the store's mapped pages", "dir", dir, "err", err)
		return
	}
	h.log.Debug("gave back the store's mapped pages", "mapped_bytes", n)
}

// trimLoop gives back the store's mapped pages when the process's
// file-backed resident memory grew more than the slack since the last
// trim (see storeTrimCheck), until ctx ends. A system that cannot tell
// or page out was told at the start (trimStore); the loop then ends.
func (h *Hub) trimLoop(ctx context.Context) {
	if h.store == nil {
		return
	}
	every := cmp.Or(h.cfg.trimEvery, storeTrimCheck)
	slack := cmp.Or(h.cfg.trimSlack, storeTrimSlack)
	dir := h.store.DB().Opts().Dir
	base, err := kv.ResidentFile()
	if err != nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := kv.ResidentFile()
		if err != nil {
			h.log.Warn("resident file pages", "err", err)
			return
		}
		if cur < base+slack {
			base = min(base, cur)
			continue
		}
		n, err := kv.TrimMapped(dir)
		if errors.Is(err, kv.ErrTrimUnsupported) {
			return
		} else if err != nil {
			h.log.Warn("give back the store's mapped pages", "dir", dir, "err", err)
		}
		if base, err = kv.ResidentFile(); err != nil {
			return
		}
		h.log.Debug("gave back the store's mapped pages", "mapped_bytes", n, "resident_file_before", cur, "after", base)
	}
}

// openStores opens what the hub keeps: PostgreSQL when the store setting
// names it, else the Badger store in --data (its layout brought up to
// this binary's); the hub's signing key, the device registry and the TLS
// material the listeners need.
func (h *Hub) openStores(ctx context.Context) (err error) {
	cfg, log := h.cfg, h.log
	var regStore registry.Store
	if cfg.Store != "" {
		// Everything the hub keeps is in PostgreSQL; --data holds only
		// the hub's key, its admin token and TLS material (files).
		if h.pg, err = pgstore.Open(ctx, cfg.Store, log.With("component", "pgstore")); err != nil {
			if errors.Is(err, pgstore.ErrSchemaTooNew) {
				return config.Errorf("store", "%v", err)
			}
			return fmt.Errorf("store %s: %w", pgstore.Redacted(cfg.Store), err)
		}
		h.undo.push(h.closePostgres)
		// The merged entities go into plain tables in the transaction of
		// the facts they come from, for SQL readers (docs/database.md).
		h.pg.SetProjector(pgstore.ProjectEntities)
		h.backend, regStore = h.pg, h.pg.Registry()
	} else {
		h.store, err = store.Open(filepath.Join(cfg.Data, "store"), kv.Profile(cfg.Profile), log)
		if err != nil {
			if errors.Is(err, kv.ErrLocked) {
				return config.Errorf("data", "%v", err)
			}
			return err
		}
		h.undo.push(h.closeStore)
		// The store's layout is brought up to this binary's before
		// anything else reads it (audit entries an older hub stored with
		// secrets in clear are rewritten and purged from its files, for
		// one).
		if err := h.store.Upgrade(migrations); err != nil {
			return err
		}
		h.backend, regStore = h.store, registry.NewBadgerStore(h.store.DB())
	}

	h.key, err = identity.LoadOrCreateKey(filepath.Join(cfg.Data, "hub.key"))
	if err != nil {
		return config.Errorf("data", "hub key: %v", err)
	}
	h.registry, err = registry.Open(regStore, log.With("component", "registry"))
	if err != nil {
		return err
	}
	h.httpTLS = cfg.TLS == "on" || !isLoopback(cfg.HTTP)
	h.mqttTLS = cfg.Broker == "" && (cfg.TLS == "on" || !isLoopback(cfg.MQTTListen))
	if h.httpTLS || h.mqttTLS {
		if h.tls, err = loadTLS(cfg); err != nil {
			return config.Errorf("tls", "%v", err)
		}
		load, files := certSource(cfg)
		if h.certs, err = pki.NewHolder(load, files, log.With("component", "tls")); err != nil {
			return config.Errorf("tls-cert", "%v", err)
		}
	}
	return nil
}

// startTransport starts the embedded broker, or connects to the
// external one (writing Mosquitto's files first when the hub keeps them).
func (h *Hub) startTransport(ctx context.Context) (err error) {
	cfg, log := h.cfg, h.log
	if cfg.Broker == "" {
		bo := broker.Options{Listen: cfg.MQTTListen, Logger: log,
			Auth: deviceAuth{reg: h.registry, open: cfg.AllowUnenrolled}}
		if h.mqttTLS {
			bo.TLS = h.certs.ServerConfig()
		}
		h.broker, err = broker.Start(bo)
		if err != nil {
			return config.Errorf("mqtt-listen", "%v", err)
		}
		h.undo.push(h.closeBroker)
		h.transport = h.broker
		return nil
	}
	user, pass := cfg.Username, cfg.Password
	if cfg.MosquittoFiles {
		if user, pass, err = h.mosquittoFiles(); err != nil {
			var ce *config.Error
			if errors.As(err, &ce) {
				return err
			}
			return config.Errorf("mosquitto-files", "%v", err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	h.client, err = brokerclient.Dial(dctx, brokerclient.Options{Broker: cfg.Broker, ClientID: cfg.ID,
		Username: user, Password: pass, Logger: log.With("component", "brokerclient")})
	cancel()
	if err != nil {
		return fmt.Errorf("external broker: %w", err)
	}
	h.undo.push(h.client.Close)
	h.transport = h.client
	return nil
}

// buildServices builds what the hub does over its store and transport:
// the downlink, the merged state, ingest, scheduled backups and
// retention. None of them runs until run.
func (h *Hub) buildServices() (err error) {
	cfg, log, tr := h.cfg, h.log, h.transport
	clock := hlc.NewClock(nil, 0)
	sign := func(payload []byte) ([]byte, error) { return identity.Sign(h.key, cfg.SignID(), payload) }
	h.down, err = downlink.Open(h.backend, tr, clock, sign, log.With("component", "downlink"))
	if err != nil {
		return err
	}
	h.down.SetDevices(siteDevices{h.registry})
	so := state.Options{Store: h.backend, Downlink: h.down, Clock: clock, HubID: cfg.ID,
		Kiosks: h.kiosks, Logger: log.With("component", "state"), SnapshotEvery: cfg.SnapshotEvery, Build: Version,
		Hold: cfg.MemoryHold}
	if cfg.Leased() {
		// A worker decides for the sites it has taken on only. It writes
		// no snapshot: the one snapshot key would hold whichever worker's
		// copy wrote last, and the sites it does not hold trail their
		// owners'. (Without snapshots nothing leaves memory either: the
		// archive is written at a snapshot.)
		so.Owns, so.SnapshotEvery = h.owns, 0
	}
	h.state, err = state.Open(so)
	if err != nil {
		return err
	}
	// After a restore every edge takes one downlink snapshot (see
	// store.Resync).
	resync, err := store.OpenResync(h.backend)
	if err != nil {
		return err
	}
	// Edges keep acked events a backup does not cover yet; a hub that
	// takes no backups has no horizon (see store.Horizon). On PostgreSQL
	// the hub takes none (the database's own backups and WAL archiving
	// do): the horizon is the committed ack itself.
	if h.horizon, err = store.OpenHorizon(h.backend, cfg.BackupDir != ""); err != nil {
		return err
	}
	h.ingest, err = ingest.New(ingest.Options{Store: h.backend, Transport: tr, Clock: clock, Resync: resync, Horizon: h.horizon,
		Applier: h.state, Downlink: h.down, Keys: deviceKeys{h.registry}, AllowUnsigned: cfg.AllowUnenrolled, Sign: sign,
		Logger: log.With("component", "ingest"), Sites: cfg.Sites, Decoders: cfg.Decoders, MaxGroup: cfg.maxGroup(),
		Leased: cfg.Leased()})
	if err != nil {
		return err
	}
	if cfg.Leased() {
		if err := h.buildLeases(); err != nil {
			return err
		}
	}
	h.registry.OnChange(func(d registry.Device) {
		if !d.Revoked.IsZero() {
			h.revoked(tr, d)
		}
	})
	if cfg.BackupDir != "" {
		dir, err := filepath.Abs(cfg.BackupDir)
		if err != nil {
			return config.Errorf("backup-dir", "%v", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return config.Errorf("backup-dir", "%v", err)
		}
		h.backups = &backup.Scheduler{Dir: dir, Every: cfg.BackupEvery, Keep: cfg.BackupKeep,
			Source: h.backupSource(dir), Logger: log.With("component", "backup"), Covered: h.horizon.Covered}
	}
	// Raw readings and door decisions are deleted after their retention;
	// the events the merged state rebuilds from are kept.
	var expiring retention.Store = h.store
	if h.pg != nil {
		expiring = h.pg
	}
	h.expiry = retention.New(retention.Options{Store: expiring,
		Keep:  map[event.Kind]time.Duration{event.KindReading: cfg.KeepReadings, event.KindAccess: cfg.KeepAccess},
		Every: cfg.RetentionEvery, Needed: state.NeedsEvent, Logger: log.With("component", "retention")})
	return nil
}

// buildHTTP builds the API (operators, site plans, metrics, the live
// stream) and takes the HTTP port.
func (h *Hub) buildHTTP() (err error) {
	cfg, log := h.cfg, h.log
	hubInfo := api.HubInfo{ID: cfg.SignID(), Key: h.key.Public().(ed25519.PublicKey), Broker: h.brokerURL(), TokenTTL: cfg.TokenTTL,
		MosquittoLogins: cfg.Broker != "" && cfg.MosquittoFiles}
	if h.tls != nil {
		hubInfo.CAPEM, hubInfo.Fingerprint = string(h.tls.CAPEM), h.tls.Fingerprint
	}
	var siteCA *siteCA // a hub that made its own CA can rotate it
	if h.tls != nil && cfg.TLSCert == "" {
		siteCA = newSiteCA(h)
		hubInfo.CA = siteCA.inService
	}
	if cfg.Pseudonymize {
		hubInfo.ResidentKey = h.registry.ResidentKey
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(h.expiry.Collector())
	h.registerMetrics(reg)
	// Operators: the admin token, operator API tokens and dashboard
	// sessions all authenticate the one API; every write is audited.
	proxies, err := operators.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return config.Errorf("trusted-proxies", "%v", err)
	}
	opsOpts := operators.Options{AdminToken: h.token, TrustedProxies: proxies, Logger: log.With("component", "operators")}
	var ops *operators.Service
	if h.pg != nil {
		ops, err = operators.Open(operators.PostgresStore{OperatorStore: h.pg.Operators()}, opsOpts)
	} else {
		ops, err = operators.OpenBadger(h.store.DB(), opsOpts)
	}
	if err != nil {
		return err
	}
	plans, err := api.LoadPlans(cfg.SitePlans)
	if err != nil {
		return config.Errorf("site-plans", "%v", err)
	}
	// The dashboard's live view: what ingest commits and what operators
	// decide goes out on the stream; doors and sensors are tracked as
	// they report.
	live, telemetry := stream.New(log.With("component", "stream")), api.NewTelemetry()
	h.ingest.OnEvents(live.Publish)
	h.ingest.OnEvents(telemetry.Observe)
	var (
		backups api.Backups
		export  api.EventScanner
		probe   *ready.StoreProbe
	)
	if h.pg != nil {
		backups, export = pgBackups{}, h.pg
		probe = &ready.StoreProbe{Write: func(key, val []byte) error {
			b := h.pg.NewBatch()
			b.Set(key, val)
			return b.Commit()
		}}
	} else {
		backups, export = snapshots{h}, h.store
		probe = &ready.StoreProbe{DB: h.store.DB}
	}
	a := &api.API{Devices: h.ingest, Events: h.backend, State: api.StreamingState{State: h.state, Stream: live}, Auth: ops,
		Enrollment: h.registry, Hub: hubInfo,
		Registry: reg, Logger: log.With("component", "http"),
		Stream: live, Telemetry: telemetry, Plans: plans, TimeZone: cfg.TimeZone, Delivery: h.down, Backups: backups, Export: export,
		Directory: ops,
		Ready:     ready.Handler(probe.Check, h.syncReady),
		Extra:     func(mux *http.ServeMux) { ops.Mount(mux); web.Mount(mux) }}
	if h.pg != nil {
		a.District = h.pg
	}
	if h.leases != nil {
		a.Owner = h.siteOwner
		a.Devices = workerDevices{in: h.ingest, st: h.backend, log: log.With("component", "http")}
		a.Delivery = workerDelivery{h}
	}
	reg.MustRegister(a.OverdueCollector())
	if siteCA != nil {
		a.SiteCA = siteCA
		reg.MustRegister(siteCA.collectors()...)
	}
	panics := prometheus.NewCounter(prometheus.CounterOpts{Name: "linli_hub_http_panics_total",
		Help: "HTTP handlers that panicked (answered 500, logged with the stack)."})
	reg.MustRegister(panics)
	handler := httpx.Recover(ops.Audit(a.Handler()), log.With("component", "http"), panics.Inc)
	// The port is taken last, once everything that can refuse to start
	// has been opened and read: a hub that fails to start leaves it free.
	h.ln, err = net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return config.Errorf("http", "cannot listen on %s: %v", cfg.HTTP, err)
	}
	h.undo.push(func() { h.ln.Close() })
	if h.httpTLS {
		h.ln = tls.NewListener(h.ln, h.certs.ServerConfig())
	}
	h.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	// Live streams never end by themselves; shutdown ends them.
	h.srv.RegisterOnShutdown(live.Close)
	return nil
}

// run starts the long-running parts in one group and the shutdown that
// waits for it to end.
func (h *Hub) run(ctx context.Context) {
	runCtx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	// The first of these to fail stops the others and the hub.
	g, gctx := errgroup.WithContext(runCtx)
	ingestCtx := gctx
	if h.leases != nil {
		// Ingest stops after the leases are handed over (each site given
		// up in it first), so nothing it stores is of a site no longer
		// held; a failing ingest still stops the group and so the leases.
		var stopIngest context.CancelFunc
		ingestCtx, stopIngest = context.WithCancel(context.Background())
		g.Go(func() error {
			defer stopIngest()
			if err := h.leases.Run(gctx); err != nil {
				return fmt.Errorf("site leases: %w", err)
			}
			return nil
		})
		g.Go(func() error { h.follow(gctx); return nil })
	}
	g.Go(func() error {
		if err := h.ingest.Run(ingestCtx); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		return nil
	})
	g.Go(func() error { h.state.Run(gctx); return nil })
	g.Go(func() error { h.expiry.Run(gctx); return nil })
	g.Go(func() error { h.trimLoop(gctx); return nil })
	if h.backups != nil {
		g.Go(func() error { h.backups.Run(gctx); return nil })
	}
	g.Go(func() error {
		if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if h.certs != nil {
		g.Go(func() error { h.certs.Watch(gctx, h.cfg.TLSReload); return nil })
	}
	go h.shutdown(gctx, g)
}

// ReloadTLS loads the server certificate again from its files (SIGHUP).
// On failure the certificate in service stays and the error says why.
func (h *Hub) ReloadTLS() error {
	if h.certs == nil {
		return nil // plain loopback listeners: nothing to reload
	}
	return h.certs.Reload()
}

// certSource is how the server certificate is read again on reload: the
// configured files, or the site CA's files in <data>/pki, which Ensure
// also renews as they near their end.
func certSource(cfg Config) (func() (tls.Certificate, error), []string) {
	if cfg.TLSCert != "" {
		return func() (tls.Certificate, error) { return tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey) },
			[]string{cfg.TLSCert, cfg.TLSKey}
	}
	dir := filepath.Join(cfg.Data, "pki")
	return func() (tls.Certificate, error) {
			b, err := loadTLS(cfg)
			if err != nil {
				return tls.Certificate{}, err
			}
			return b.Cert, nil
		},
		[]string{filepath.Join(dir, pki.ServerCertFile), filepath.Join(dir, pki.ServerKeyFile)}
}

// syncReady is the broker half of readiness: the hub syncs only while
// its broker takes devices in (embedded) or its session is up (external)
// and ingest holds its subscriptions.
func (h *Hub) syncReady() ready.Result {
	switch {
	case h.broker != nil && !h.broker.Listening():
		return ready.Result{Reason: "broker: the embedded MQTT broker is not listening on " + h.broker.Addr()}
	case h.client != nil && !h.client.Connected():
		return ready.Result{Reason: "broker: not connected to the external broker " + h.cfg.Broker}
	case !h.ingest.Subscribed():
		return ready.Result{Reason: "ingest: not subscribed to the devices' topics"}
	}
	return ready.Result{}
}

func (h *Hub) closeStore() {
	if h.store != nil {
		if err := h.store.Close(); err != nil {
			h.log.Error("close store", "err", err)
		}
	}
	h.closePostgres()
}

// closePostgres closes the PostgreSQL store, if the hub has one, once.
func (h *Hub) closePostgres() {
	if h.pg == nil {
		return
	}
	if err := h.pg.Close(); err != nil {
		h.log.Error("close PostgreSQL store", "err", err)
	}
	h.pg = nil
}

func (h *Hub) closeBroker() {
	if err := h.broker.Close(); err != nil {
		h.log.Error("close broker", "err", err)
	}
}

// shutdown stops the hub once its group's context ends (Stop, the
// parent context, or the first goroutine to fail): HTTP stops taking
// requests first, then the pipelines end, then the broker and the store
// close.
func (h *Hub) shutdown(ctx context.Context, g *errgroup.Group) {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		h.log.Warn("http shutdown", "err", err)
	}
	// Ingest commits and acks what it has decoded before it returns; the
	// broker goes after it so those acks can still be sent.
	err := g.Wait()
	if h.broker != nil {
		h.closeBroker()
	}
	if h.client != nil {
		h.client.Close()
	}
	h.takeMu.Lock()
	h.closing = true
	h.takeMu.Unlock()
	h.takes.Wait()
	h.closeStore()
	h.log.Info("hub stopped")
	h.err = err
	close(h.done)
}

// revoked takes a revoked device off the air: offline at once (with an
// external broker its session lasts until Mosquitto reloads its files, and
// its retained "online" would otherwise bring it back at the hub's next
// start), its retained status cleared, its embedded-broker session ended.
func (h *Hub) revoked(tr ingest.Transport, d registry.Device) {
	h.ingest.SetOffline(d.ID)
	if err := tr.Publish(wire.Topic(d.Site, d.ID, wire.LeafStatus), nil, true); err != nil {
		h.log.Warn("clear revoked device's retained status", "device", d.ID, "err", err)
	}
	if h.broker != nil {
		h.broker.Disconnect(d.ID) // refused from its next connect on
	}
}

// kiosks lists the enrolled kiosks of a site that the hub has heard from:
// only they receive the site's downlink, so only they get a share of
// seats.
func (h *Hub) kiosks(site string) []string {
	var out []string
	for _, d := range h.ingest.SiteDevices(site) {
		if r, ok := h.registry.Get(d.ID); d.Role == "kiosk" && ok && r.Active() && r.Site == site {
			out = append(out, d.ID)
		}
	}
	return out
}

// mosquittoFiles writes the external Mosquitto's password file and ACL now
// and after every enrollment or revocation, and returns the hub's login.
func (h *Hub) mosquittoFiles() (login, pass string, err error) {
	own := filepath.Join(h.cfg.Data, "mosquitto")
	if pass, err = registry.HubPassword(own); err != nil {
		return "", "", err
	}
	files := registry.MosquittoFiles{Dir: h.cfg.MosquittoDir, GID: -1}
	if files.Dir == "" {
		files.Dir = own
	}
	if h.cfg.MosquittoGroup != "" {
		g, err := user.LookupGroup(h.cfg.MosquittoGroup)
		if err != nil {
			return "", "", config.Errorf("mosquitto-group", "%v", err)
		}
		if files.GID, err = strconv.Atoi(g.Gid); err != nil {
			return "", "", config.Errorf("mosquitto-group", "group %s has gid %q", g.Name, g.Gid)
		}
	}
	login = h.cfg.ID
	var secret string
	if h.cfg.Leased() {
		// The workers of a district share one broker and its one pair of
		// files: each worker's password derives from the district's
		// secret (hub.password, copied to every worker with hub.key), and
		// each writes every worker's login.
		secret, pass = pass, registry.WorkerPassword(pass, login)
	}
	if h.cfg.MosquittoBridge {
		// The standby broker's bridge logs in to the active one under a
		// login of its own: the hub's would take the hub's session (the
		// login is the client id).
		bpass, err := registry.BridgePassword(own)
		if err != nil {
			return "", "", err
		}
		files.Bridges = []registry.Login{{User: login + "-bridge", Password: bpass}}
	}
	var reload func()
	if h.cfg.MosquittoReload != "" {
		reload = func() {
			cmd := exec.Command("/bin/sh", "-c", h.cfg.MosquittoReload)
			if out, err := cmd.CombinedOutput(); err != nil {
				h.log.Warn("mosquitto reload command failed", "err", err, "output", strings.TrimSpace(string(out)))
			}
		}
	}
	current := func() (registry.MosquittoFiles, error) {
		f := files
		if h.cfg.Leased() {
			f.FromStore = true
			ids, err := h.workerIDs()
			if err != nil {
				return f, err
			}
			for _, id := range ids {
				if id != login {
					f.Workers = append(f.Workers, registry.Login{User: id, Password: registry.WorkerPassword(secret, id)})
				}
			}
		}
		return f, nil
	}
	if h.cfg.Leased() {
		// Listed before it logs in: another worker's rewrite meanwhile
		// keeps this one's login.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := lease.Announce(ctx, h.pg.Pool(), login, 0)
		cancel()
		if err != nil {
			return "", "", err
		}
	}
	msync := registry.NewMosquittoSync(h.registry, current, login, pass, reload)
	if err := msync.Sync(); err != nil {
		return "", "", config.Errorf("mosquitto-dir", "%v", err)
	}
	// The worker list changed: the same serialised rewrite.
	h.rewriteMosquitto = msync.Sync
	h.registry.OnChanges(func([]registry.Device) {
		if err := msync.Sync(); err != nil {
			h.log.Error("rewrite mosquitto files", "err", err)
		}
	})
	return login, pass, nil
}

// brokerURL is what edges are told to connect to.
func (h *Hub) brokerURL() string {
	switch {
	case h.broker != nil && h.mqttTLS:
		return "ssl://" + h.broker.Addr()
	case h.broker != nil:
		return "tcp://" + h.broker.Addr()
	}
	return h.cfg.Broker
}

// loadTLS loads the configured certificate, or the site CA's, issued for
// the listen addresses, the machine's name and its addresses.
func loadTLS(cfg Config) (*pki.Bundle, error) {
	if cfg.TLSCert != "" {
		return pki.FromFiles(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA)
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, cfg.TLSHosts...)
	for _, addr := range []string{cfg.HTTP, cfg.MQTTListen} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			// Listening everywhere: name every address the machine has.
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range addrs {
					if n, ok := a.(*net.IPNet); ok {
						hosts = append(hosts, n.IP.String())
					}
				}
			}
			continue
		}
		hosts = append(hosts, host)
	}
	if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name)
	}
	slices.Sort(hosts)
	return pki.Ensure(filepath.Join(cfg.Data, "pki"), slices.Compact(hosts), time.Now())
}

// deviceAuth lets enrolled devices in with their credentials and, in open
// mode, devices that never enrolled without any.
type deviceAuth struct {
	reg  *registry.Registry
	open bool
}

func (a deviceAuth) Authenticate(clientID, username string, password []byte) (string, error) {
	site, err := a.reg.Authenticate(clientID, username, password)
	if errors.Is(err, registry.ErrUnknown) && a.open && username == "" {
		return "", nil // unbound: its site comes from its topics
	}
	return site, err
}

// siteDevices adapts the registry to the downlink's restricted changes:
// only enrolled, unrevoked devices have a role.
type siteDevices struct{ reg *registry.Registry }

func (s siteDevices) Role(site, device string) string {
	if d, ok := s.reg.Get(device); ok && d.Active() && d.Site == site {
		return d.Role
	}
	return ""
}

func (s siteDevices) OfRole(site, role string) []string {
	var out []string
	for _, d := range s.reg.List() {
		if d.Active() && d.Site == site && d.Role == role {
			out = append(out, d.ID)
		}
	}
	return out
}

// deviceKeys adapts the registry to ingest's signature checks.
type deviceKeys struct{ reg *registry.Registry }

func (k deviceKeys) Key(id string) (ed25519.PublicKey, string, bool, error) {
	d, ok := k.reg.Get(id)
	if !ok || len(d.PublicKey) == 0 {
		return nil, "", false, nil
	}
	if !d.Revoked.IsZero() {
		return nil, d.Site, true, registry.ErrRevoked
	}
	return ed25519.PublicKey(d.PublicKey), d.Site, true, nil
}

// Generation gives ingest a replaced device's earlier keys.
func (k deviceKeys) Generation(id string) (uint64, []ingest.PastKey) {
	d, ok := k.reg.Get(id)
	if !ok {
		return 0, nil
	}
	var past []ingest.PastKey
	for _, p := range d.Previous {
		if !p.Revoked && len(p.PublicKey) > 0 {
			past = append(past, ingest.PastKey{Pub: p.PublicKey, From: p.From, Below: p.Below})
		}
	}
	return d.SeqBase, past
}

// HTTPURL is the API's base URL.
func (h *Hub) HTTPURL() string {
	if h.httpTLS {
		return "https://" + h.HTTPAddr()
	}
	return "http://" + h.HTTPAddr()
}

// HTTPAddr is the API's listen address.
func (h *Hub) HTTPAddr() string { return h.ln.Addr().String() }

// MQTTAddr is the embedded broker's address, or the external broker URL.
func (h *Hub) MQTTAddr() string {
	if h.broker != nil {
		return h.broker.Addr()
	}
	return h.cfg.Broker
}

// AdminToken is the admin API token.
func (h *Hub) AdminToken() string { return h.token }

// Ingest exposes the pipeline (tests and tools in this module).
func (h *Hub) Ingest() *ingest.Ingest { return h.ingest }

// Stop cancels the hub and waits for it.
func (h *Hub) Stop() error {
	h.cancel()
	return h.Wait()
}

// Wait blocks until the hub has stopped and returns the first failure.
func (h *Hub) Wait() error {
	<-h.done
	return h.err
}

// adminToken reads <data>/admin.token, creating it (0600) on first start.
func adminToken(dir string) (string, error) {
	path := filepath.Join(dir, "admin.token")
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("%s is too short to be a token; delete it to get a new one", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("install %s: %w", path, err)
	}
	return tok, nil
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

func (h *Hub) registerMetrics(reg *prometheus.Registry) {
	reg.MustRegister(h.down.Collectors()...)
	if h.backups != nil {
		gauge := func(name, help string, f func(backup.Stats) float64) {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
				func() float64 { return f(h.backups.Stats()) }))
		}
		gauge("linli_hub_backup_last_success_timestamp_seconds", "When the last scheduled backup was written and checked (Unix time; 0: none yet).",
			func(s backup.Stats) float64 {
				if s.LastSuccess.IsZero() {
					return 0
				}
				return float64(s.LastSuccess.UnixNano()) / 1e9
			})
		gauge("linli_hub_backup_last_size_bytes", "Size of the last scheduled backup.", func(s backup.Stats) float64 { return float64(s.LastSize) })
		gauge("linli_hub_backup_last_duration_seconds", "How long the last scheduled backup took, writing and checking.",
			func(s backup.Stats) float64 { return s.LastDuration.Seconds() })
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "linli_hub_backup_failures_total",
			Help: "Scheduled backups that failed (see the hub's log)."}, func() float64 { return float64(h.backups.Stats().Failures) }))
	}
	counter := func(name, help string, f func(ingest.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(h.ingest.Stats())) }))
	}
	counter("linli_hub_messages_total", "MQTT messages received on up topics.", func(s ingest.Stats) uint64 { return s.Messages })
	counter("linli_hub_batches_total", "Event batches committed.", func(s ingest.Stats) uint64 { return s.Batches })
	counter("linli_hub_events_total", "New events committed.", func(s ingest.Stats) uint64 { return s.Events })
	counter("linli_hub_duplicates_total", "Events received again and dropped.", func(s ingest.Stats) uint64 { return s.Duplicates })
	counter("linli_hub_rejected_total", "Messages refused (undecodable, bad batch, wrong site).", func(s ingest.Stats) uint64 { return s.Rejected })
	counter("linli_hub_quarantined_total", "Events stored aside because they failed validation.", func(s ingest.Stats) uint64 { return s.Quarantined })
	counter("linli_hub_commits_total", "Synced group commits.", func(s ingest.Stats) uint64 { return s.Commits })
	counter("linli_hub_forged_total", "Messages refused for their signature or sender (unsigned from an enrolled device, another key, revoked).", func(s ingest.Stats) uint64 { return s.Forged })
	if h.broker != nil {
		for _, k := range []struct {
			what string
			f    func(c, p, s uint64) uint64
		}{
			{"connect", func(c, _, _ uint64) uint64 { return c }},
			{"publish", func(_, p, _ uint64) uint64 { return p }},
			{"subscribe", func(_, _, s uint64) uint64 { return s }},
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "linli_hub_acl_refused_total",
				Help: "Connections, publishes and subscriptions the embedded broker refused.", ConstLabels: prometheus.Labels{"what": k.what}},
				func() float64 { return float64(k.f(h.broker.Refused())) }))
		}
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "linli_hub_commit_seconds_total",
		Help: "Time spent committing."}, func() float64 { return float64(h.ingest.Stats().CommitNanos) / 1e9 }))
	reg.MustRegister(deviceCollector{devices: h.ingest.Devices, now: time.Now})
	if h.pg != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "linli_hub_store_commit_retries_total",
			Help: "PostgreSQL commits run again on a fresh connection because their outcome was unknown (a dead connection, a restart, a failover, a cancelled wait for the standby); nothing is acked until one goes through."},
			func() float64 { return float64(h.pg.CommitRetries()) }))
	}
	if h.leases != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linli_hub_sites_served",
			Help: "Sites this worker serves: their lease held and the site taken on (loaded, subscribed to)."},
			func() float64 { return float64(len(h.ingest.Sites())) }))
	}
	if h.certs != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linli_hub_tls_cert_expiry_timestamp_seconds",
			Help: "End of the TLS server certificate's validity (Unix time)."},
			func() float64 { return float64(h.certs.NotAfter().Unix()) }))
	}
	reg.MustRegister(alarmCollector{read: h.state.Read, now: time.Now})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "linli_hub_devices_online",
		Help: "Devices whose status is online."}, func() float64 {
		n := 0
		for _, d := range h.ingest.Devices() {
			if d.Online {
				n++
			}
		}
		return float64(n)
	}))
}

// postgresGCPercent is the collector's GOGC for a hub on PostgreSQL.
const postgresGCPercent = 400

// applyGCPercent gives the collector of a hub on PostgreSQL (store set)
// the headroom the Badger store's hub has, unless GOGC is in env (the
// runtime has read it). It returns the GOGC in force. The collector runs
// each time the heap grows by GOGC percent of what was live after the
// last run. On Badger the live heap holds the memtable arenas (83 MiB at
// the server profile), so the hub collects every 100 MiB or more of
// allocation; on PostgreSQL the live heap is a tenth of that, and at the
// default of 100 the collector took 23 % of the hub's CPU in a catch-up
// (1 % on Badger). 400 puts its runs about as far apart as on Badger;
// the memory limit still bounds the heap. Logged at debug level, like
// the memory limit, for the same reason.
func applyGCPercent(storeURL string, env []string, log *slog.Logger) int {
	if v, ok := config.LookupEnv(env, "GOGC"); ok {
		log.Debug("collector's GOGC from the environment", "GOGC", v)
		return gcPercent()
	}
	if storeURL == "" {
		return gcPercent()
	}
	debug.SetGCPercent(postgresGCPercent)
	log.Debug("collector's GOGC for the PostgreSQL store", "GOGC", postgresGCPercent)
	return postgresGCPercent
}

// gcPercent is the collector's GOGC in force (the runtime has no getter:
// setting returns the old value, which is put back).
func gcPercent() int {
	cur := debug.SetGCPercent(100)
	debug.SetGCPercent(cur)
	return cur
}

// applyMemoryLimit sets the Go heap's soft limit to lim (the memory-limit
// setting; 0 leaves none), unless GOMEMLIMIT is in env: the runtime has
// read that already, and an operator who set it meant it. It returns the
// limit in force. It logs at debug level only: it runs before the
// settings are checked, and a bad setting is answered with one line.
//
// Why the hub has one by default: the collector's target is twice the
// live heap, and the live heap counts the store's memtable arenas (Badger
// allocates each whole, 83 MiB at the server profile, mostly untouched).
// A compaction of many fresh tables makes builders and decompressed
// blocks faster than the collector catches up with; starts against a
// store just written settled at 174 to 1,165 MiB without a limit.
func applyMemoryLimit(lim int64, env []string, log *slog.Logger) int64 {
	if v, ok := config.LookupEnv(env, "GOMEMLIMIT"); ok {
		log.Debug("Go heap limit from GOMEMLIMIT; memory-limit left aside", "GOMEMLIMIT", v)
		return debug.SetMemoryLimit(-1)
	}
	if lim <= 0 {
		debug.SetMemoryLimit(math.MaxInt64) // the runtime's "no limit"
		return 0
	}
	debug.SetMemoryLimit(lim)
	log.Debug("Go heap soft limit", "memory_limit_mib", lim>>20)
	return lim
}
