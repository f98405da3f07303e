package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"linli/edge/outbox"
	"linli/firmware/board"
	"linli/firmware/contact"
	"linli/firmware/door"
	"linli/firmware/sht3x"
	"linli/firmware/sim"
	"linli/firmware/wiegand"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/wire"
)

// Log is the edge's outbox.
type Log interface {
	// Append returns once body is durable as the device's next event; an
	// error means nothing was recorded.
	Append(ctx context.Context, body event.Body) (event.Event, error)
	// AppendFunc is Append with the body built inside the commit's
	// transaction, so the gateway's own keys move with the event.
	AppendFunc(ctx context.Context, kind event.Kind, build outbox.Builder) (event.Event, error)
	Cursors() (last, acked, pending uint64)
}

// Uplink is the hub session.
type Uplink interface {
	// SendPriority sends a just-recorded event at once, ahead of any
	// backlog; it never blocks.
	SendPriority(ev event.Event)
	Connected() bool
	// LastSync is when the hub last answered; zero if never.
	LastSync() time.Time
}

// Replica is the edge's mirror of the hub's downlink, which carries the
// access lists; it takes them only from messages whose hub signature it
// verified.
type Replica interface {
	AfterApply(f func([]wire.Change))
	Get(entity, id string) (wire.Change, bool, error)
}

// Options configure a Gateway.
type Options struct {
	Config   Config
	Site     string
	Building string
	Log      Log
	// DB is the edge's store (edge/store), where the gateway keeps its
	// access list and open alarms.
	DB       *badger.DB
	Uplink   Uplink
	Replica  Replica
	Registry *prometheus.Registry // optional
	Logger   *slog.Logger
	// Now is the wall clock that access lists age by; nil means time.Now.
	Now func() time.Time
	// Hardware replaces what Config.Hardware names (tests). Sim is the
	// simulator behind it, if any: the gateway runs its scenario and serves
	// its control routes.
	Hardware board.Hardware
	Sim      *sim.Sim
}

// Keys of the gateway's own state in the edge's store.
const (
	keyList     = "g/acl"    // the access list in force (accesslist.List CBOR, kv.PutLarge)
	prefixAlarm = "g/alarm/" // {sensor}/{kind} of each alarm in force
)

// Gateway runs a building's drivers and rules.
type Gateway struct {
	opts   Options
	cfg    Config
	log    *slog.Logger
	dev    *devices // nil without hardware
	listID string

	doorCfg    map[string]DoorConfig // by door
	readerDoor map[string]string     // reader → door
	contactOf  map[string]string     // smoke or water sensor → its kind

	httpMu    sync.Mutex // orders readings posted over HTTP from decision to disk
	mu        sync.Mutex // the rules and the status below
	access    *Access
	doors     map[string]*Door
	fire      *Fire
	tele      *Telemetry
	releasing bool
	contacts  map[string]bool // contact sensor → in alarm
	last      map[string]decisionOut
	sensors   map[string]*sensorStatus
	settleAt  time.Time
	settled   bool
	decisions uint64
	counts    counts

	records chan Record
	pulses  sync.WaitGroup
	metrics *prometheus.CounterVec
}

type counts struct {
	listsRefused, sensorErrors, writeErrors, relayErrors uint64
}

type sensorStatus struct {
	Sensor string    `json:"sensor"`
	Kind   string    `json:"kind"`
	Value  *float64  `json:"value,omitempty"` // contacts: 1 in alarm
	Temp   *float64  `json:"temperature,omitempty"`
	Hum    *float64  `json:"humidity,omitempty"`
	At     time.Time `json:"at"`
	Error  string    `json:"error,omitempty"`
	Errors uint64    `json:"errors"`
}

// New builds a gateway: opens its hardware and drivers, restores the list
// and the alarms in force from the store, and hooks into the replica for
// new lists. Unusable hardware or device settings are a *config.Error.
func New(opts Options) (*Gateway, error) {
	if opts.DB == nil {
		return nil, errors.New("gateway: no store to keep the access list and alarms in")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg := opts.Config
	g := &Gateway{opts: opts, cfg: cfg, log: opts.Logger, listID: accesslist.ID(opts.Site, opts.Building),
		doorCfg: map[string]DoorConfig{}, readerDoor: map[string]string{}, contactOf: map[string]string{},
		access: NewAccess(opts.Site, opts.Building, cfg.AccessMaxAge), doors: map[string]*Door{},
		fire: NewFire(opts.Building, cfg.HeatThreshold, cfg.HeatHyst).WithPlaces(cfg.Places),
		tele: NewTelemetry(opts.Building, map[string]float64{"temperature": cfg.DeadbandTemp, "humidity": cfg.DeadbandHum,
			"smoke": 0.5, "water": 0.5}, cfg.Heartbeat),
		contacts: map[string]bool{}, last: map[string]decisionOut{}, sensors: map[string]*sensorStatus{},
		records: make(chan Record, 1024),
		metrics: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "linli_gateway_access_total",
			Help: "Access events recorded, by result."}, []string{"result"}),
	}
	for _, d := range cfg.Doors {
		d = d.withDefaults()
		g.doorCfg[d.Name] = d
		g.doors[d.Name] = NewDoor(d.Name, opts.Building, d.Unlock, cfg.ForcedGrace)
		g.doors[d.Name].place = cfg.Places[d.Name]
		if d.Reader != "" {
			g.readerDoor[d.Reader] = d.Name
		}
	}
	for _, s := range cfg.Sensors {
		if s.Kind == SensorSmoke || s.Kind == SensorWater {
			g.contactOf[s.Name] = s.Kind
		}
		g.sensors[s.Name] = &sensorStatus{Sensor: s.Name, Kind: s.Kind}
	}
	hw, sm, speed := opts.Hardware, opts.Sim, 1.0
	if hw == nil {
		var err error
		if hw, sm, speed, err = openHardware(&cfg, opts.Logger); err != nil {
			return nil, err
		}
	}
	if hw != nil {
		dev, err := buildDevices(&cfg, hw, sm, speed)
		if err != nil {
			return nil, err
		}
		g.dev = dev
	}
	if err := g.restore(); err != nil {
		if g.dev != nil {
			if cerr := g.dev.close(); cerr != nil {
				g.log.Warn("close devices", "err", cerr)
			}
		}
		return nil, err
	}
	if opts.Replica != nil {
		opts.Replica.AfterApply(g.onChanges)
	}
	if opts.Registry != nil {
		g.registerMetrics(opts.Registry)
	}
	return g, nil
}

// restore takes the list and the alarms in force from the store: the
// gateway's own copy of the list and the replica's (whichever is newer),
// and the alarms that were active when it stopped.
func (g *Gateway) restore() error {
	var (
		own    []byte
		alarms []AlarmKey
	)
	err := g.opts.DB.View(func(txn *badger.Txn) error {
		var err error
		if own, _, err = kv.GetLarge(txn, []byte(keyList)); err != nil {
			return err
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte(prefixAlarm), false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			sensor, kind, ok := strings.Cut(strings.TrimPrefix(string(it.Item().Key()), prefixAlarm), "/")
			if ok {
				alarms = append(alarms, AlarmKey{Sensor: sensor, Kind: kind})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gateway: restore state: %w", err)
	}
	if own != nil {
		g.installList(own, "store")
	}
	if g.opts.Replica != nil {
		c, ok, err := g.opts.Replica.Get(wire.EntityAccessList, g.listID)
		if err != nil {
			return fmt.Errorf("gateway: read access list from replica: %w", err)
		}
		if ok && !c.Deleted {
			g.installList(c.Body, "replica")
		}
	}
	now := g.opts.Now()
	g.fire.Restore(alarms, now) // escape doors are held again when Run starts
	g.settleAt = now.Add(2*g.cfg.Sample + 2*time.Second)
	if len(alarms) > 0 {
		g.log.Warn("alarms in force when the gateway stopped; kept until their sensors report", "alarms", alarms)
	}
	return nil
}

// onChanges takes this building's list from what the replica applied. It
// runs on the replica's goroutine.
func (g *Gateway) onChanges(cs []wire.Change) {
	for _, c := range cs {
		if c.Entity != wire.EntityAccessList || c.ID != g.listID {
			continue
		}
		if c.Deleted {
			// A deletion carries no list to check; only a newer list, even an
			// empty one, changes who gets in.
			g.log.Warn("the hub dropped this building's access list; the last one stays in force", "list", c.ID)
			continue
		}
		body := c.Body
		if body == nil {
			// A delta to a list the replica keeps split: read it whole.
			whole, ok, err := g.opts.Replica.Get(c.Entity, c.ID)
			if err != nil || !ok {
				g.log.Error("read the access list the replica applied", "list", c.ID, "held", ok, "err", err)
				continue
			}
			body = whole.Body
		}
		g.installList(body, "hub")
	}
}

// installList decodes a list and puts it in force unless it is older than
// the one in force, then keeps a copy in the store.
func (g *Gateway) installList(body []byte, from string) {
	l, err := accesslist.Decode(body)
	if err == nil {
		g.mu.Lock()
		err = g.access.Install(l, g.opts.Now())
		g.mu.Unlock()
	}
	switch {
	case errors.Is(err, ErrNotNewer):
		g.log.Debug("access list not newer than the one in force", "from", from, "err", err)
		return
	case err != nil:
		g.mu.Lock()
		g.counts.listsRefused++
		g.mu.Unlock()
		g.log.Warn("access list refused", "from", from, "err", err)
		return
	}
	if from != "store" {
		// In pieces when large: a list can be 1 MiB, more than one
		// transaction of the small store profile holds.
		if err := kv.PutLarge(g.opts.DB, []byte(keyList), body); err != nil {
			g.log.Error("keep access list", "err", err)
		}
	}
	cards := 0
	for _, n := range l.Cards() {
		cards += n
	}
	g.log.Info("access list in force", "from", from, "issued", l.Issued.Time(), "doors", len(l.Doors), "cards", cards)
}

// Run runs the drivers and the rules until ctx ends, then records what is
// left and returns. It returns an error if a driver fails.
func (g *Gateway) Run(ctx context.Context) error {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		// Events decided before the stop are still recorded: the outbox
		// closes only after Run returns.
		g.writeLoop(context.WithoutCancel(ctx))
	}()
	err := g.run(ctx)
	g.pulses.Wait()
	close(g.records)
	<-writerDone
	if g.dev != nil {
		err = errors.Join(err, g.dev.close())
	}
	return err
}

type sample struct {
	sensor  string
	reading sht3x.Reading
	err     error
	at      time.Time
}

func (g *Gateway) run(ctx context.Context) error {
	if g.dev == nil {
		<-ctx.Done()
		return nil
	}
	doorEvs := make(chan door.Event, 64)
	swipes := make(chan wiegand.Swipe, 16)
	contacts := make(chan contact.Event, 16)
	samples := make(chan sample, 16)
	n := len(g.dev.doors) + len(g.dev.readers) + len(g.dev.contacts) + len(g.dev.sht) + 1
	errs := make(chan error, n) // one per driver: a send never blocks
	dctx, stop := context.WithCancel(ctx)
	var drivers sync.WaitGroup
	start := func(f func() error) {
		drivers.Add(1)
		go func() {
			defer drivers.Done()
			if err := f(); err != nil && dctx.Err() == nil {
				errs <- err
			}
		}()
	}
	defer func() { stop(); drivers.Wait() }()
	for _, d := range g.dev.doors {
		start(func() error { return d.Run(dctx, doorEvs) })
	}
	for _, r := range g.dev.readers {
		start(func() error { return r.Run(dctx, swipes) })
	}
	for _, c := range g.dev.contacts {
		start(func() error { return c.Run(dctx, contacts) })
	}
	for _, s := range g.dev.sht {
		start(func() error { g.sample(dctx, s, samples); return nil })
	}
	if g.dev.sim != nil {
		start(func() error {
			if err := g.dev.waitInputs(dctx, 30*time.Second); err != nil {
				return fmt.Errorf("simulator: %w", err)
			}
			return g.dev.sim.Run(dctx)
		})
	}
	g.mu.Lock()
	g.applyRelease(g.dev.hw.Now()) // doors held for alarms in force at the last stop
	g.mu.Unlock()

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var recs []Record
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return fmt.Errorf("gateway driver: %w", err)
		case e := <-doorEvs:
			recs = g.onDoor(e)
		case s := <-swipes:
			recs = g.onSwipe(ctx, s)
		case c := <-contacts:
			recs = g.onContact(c)
		case s := <-samples:
			recs = g.onSample(s)
		case <-tick.C:
			recs = g.onTick()
		}
		for _, r := range recs {
			g.records <- r
		}
	}
}

// sample reads an SHT3x now and then every sample interval.
func (g *Gateway) sample(ctx context.Context, s shtSensor, out chan<- sample) {
	t := time.NewTicker(g.cfg.Sample)
	defer t.Stop()
	for {
		r, err := s.dev.Sense(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case out <- sample{sensor: s.name, reading: r, err: err, at: g.dev.hw.Now()}:
		case <-ctx.Done():
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (g *Gateway) onDoor(e door.Event) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.doors[e.Door]
	if d == nil {
		return nil
	}
	return g.note(d.Event(e), e.At)
}

func (g *Gateway) onSwipe(ctx context.Context, s wiegand.Swipe) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	name, ok := g.readerDoor[s.Reader]
	if !ok {
		return nil
	}
	dc := g.doorCfg[name]
	decision := g.access.Decide(name, dc.Fallback, s, g.opts.Now())
	out := []Record{{Body: decision}}
	if decision.Result == "granted" {
		// The strike first: the resident waits for the door, not the disk.
		g.pulse(ctx, name, dc.Unlock)
		out = append(out, g.doors[name].Grant(s.At)...)
	}
	if s.Err != nil {
		g.log.Info("bad card read", "reader", s.Reader, "bits", len(s.Bits), "err", s.Err)
	}
	return g.note(out, s.At)
}

// pulse releases a door's strike for d in the background; g.mu is held.
func (g *Gateway) pulse(ctx context.Context, door string, d time.Duration) {
	r := g.dev.strikes[door]
	if r == nil {
		return
	}
	g.pulses.Add(1)
	go func() {
		defer g.pulses.Done()
		if err := r.Pulse(ctx, d); err != nil && !errors.Is(err, context.Canceled) {
			g.mu.Lock()
			g.counts.relayErrors++
			g.mu.Unlock()
			g.log.Error("strike pulse", "door", door, "err", err)
		}
	}()
}

func (g *Gateway) onContact(c contact.Event) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	kind, ok := g.contactOf[c.Sensor]
	if !ok {
		return nil
	}
	alarm := c.State == contact.Alarm
	g.contacts[c.Sensor] = alarm
	v := 0.0
	if alarm {
		v = 1
	}
	if st := g.sensors[c.Sensor]; st != nil {
		st.Value, st.At = &v, c.At
	}
	out := g.fire.Contact(c.Sensor, kind, alarm, c.At)
	out = append(out, g.applyRelease(c.At)...)
	out = append(out, g.tele.Sample(c.Sensor, kind, v, c.At)...)
	return g.note(out, c.At)
}

func (g *Gateway) onSample(s sample) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sensors[s.sensor]
	if s.err != nil {
		g.counts.sensorErrors++
		st.Errors++
		if st.Error == "" {
			g.log.Warn("sensor read failed", "sensor", s.sensor, "err", s.err)
		}
		st.Error = s.err.Error()
		return nil
	}
	if st.Error != "" {
		g.log.Info("sensor reads again", "sensor", s.sensor)
	}
	t, h := s.reading.Temperature, s.reading.Humidity
	st.Temp, st.Hum, st.At, st.Error = &t, &h, s.at, ""
	// Alarms before readings: they go first into the outbox and to the hub.
	out := g.fire.Temperature(s.sensor, t, s.at)
	out = append(out, g.applyRelease(s.at)...)
	out = append(out, g.tele.Sample(s.sensor, "temperature", t, s.at)...)
	out = append(out, g.tele.Sample(s.sensor, "humidity", h, s.at)...)
	return g.note(out, s.at)
}

func (g *Gateway) onTick() []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	hwNow, now := g.dev.hw.Now(), g.opts.Now()
	var out []Record
	for _, name := range slices.Sorted(maps.Keys(g.doors)) {
		out = append(out, g.doors[name].Tick(hwNow)...)
	}
	// In touch with the hub, the list in force is its current one: it
	// sends every change at once. An idle session with nothing unacked
	// counts too, or a quiet gateway would see its list age while online.
	up := g.opts.Uplink
	if up != nil {
		g.access.Confirm(up.LastSync())
		if _, _, pending := g.opts.Log.Cursors(); up.Connected() && pending == 0 {
			g.access.Confirm(now)
		}
	}
	if !g.settled && !now.Before(g.settleAt) {
		g.settled = true
		out = append(out, g.fire.Settle(func(sensor string) bool { _, ok := g.sensors[sensor]; return ok })...)
		out = append(out, g.applyRelease(hwNow)...)
	}
	for _, name := range slices.Sorted(maps.Keys(g.contactOf)) {
		v := 0.0
		if g.contacts[name] {
			v = 1
		}
		if st := g.sensors[name]; st.Value == nil {
			st.Value, st.At = &v, hwNow // at rest until the contact says otherwise
		}
		out = append(out, g.tele.Sample(name, g.contactOf[name], v, hwNow)...) // the first value, then heartbeats
	}
	return g.note(out, hwNow)
}

// applyRelease holds or frees the escape doors when the fire rules changed
// their mind; g.mu is held.
func (g *Gateway) applyRelease(at time.Time) []Record {
	rel := g.fire.Releasing()
	if rel == g.releasing {
		return nil
	}
	g.releasing = rel
	var out []Record
	for _, name := range slices.Sorted(maps.Keys(g.doorCfg)) {
		dc := g.doorCfg[name]
		if !dc.Escape {
			continue
		}
		if r := g.strike(name); r != nil {
			if err := r.Hold(rel); err != nil {
				g.counts.relayErrors++
				g.log.Error("escape door release", "door", name, "hold", rel, "err", err)
			}
		}
		out = append(out, g.doors[name].Hold(rel, at)...)
	}
	if rel {
		g.log.Warn("fire alarm: escape doors released")
	} else {
		g.log.Info("fire alarms cleared: escape doors locked again")
	}
	return out
}

// note keeps the last decision of each door for the API and counts access
// events; g.mu is held.
func (g *Gateway) note(recs []Record, at time.Time) []Record {
	for _, r := range recs {
		if a, ok := r.Body.(*event.Access); ok {
			g.metrics.WithLabelValues(a.Result).Inc()
			if a.Result == "granted" || a.Result == "denied" || a.Result == "bad_read" || a.Result == "forced" {
				g.decisions++
				g.last[a.Door] = decisionOut{N: g.decisions, Result: a.Result, Credential: a.Credential, Reason: a.Reason, At: at}
			}
		}
	}
	return recs
}

// writeLoop records what the rules decided, in order; alarms also go to the
// hub at once.
func (g *Gateway) writeLoop(ctx context.Context) {
	for r := range g.records {
		ev, err := g.write(ctx, r)
		if err != nil {
			g.mu.Lock()
			g.counts.writeErrors++
			g.mu.Unlock()
			g.log.Error("record gateway event", "kind", r.Body.Kind(), "err", err)
			continue
		}
		if r.Priority && g.opts.Uplink != nil {
			g.opts.Uplink.SendPriority(ev)
		}
	}
}

// write appends one record. An alarm is recorded together with the
// gateway's list of alarms in force, so a restart knows what to clear.
func (g *Gateway) write(ctx context.Context, r Record) (event.Event, error) {
	a, ok := r.Body.(*event.Alarm)
	if !ok {
		return g.opts.Log.Append(ctx, r.Body)
	}
	return g.opts.Log.AppendFunc(ctx, event.KindAlarm, func(txn *badger.Txn) (event.Body, error) {
		key := []byte(prefixAlarm + a.Sensor + "/" + a.Type)
		if a.Active {
			return a, txn.Set(key, nil)
		}
		return a, txn.Delete(key)
	})
}
