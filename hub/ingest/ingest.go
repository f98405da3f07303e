// Package ingest receives what edges publish, decodes and deduplicates their
// batches, commits new events to the store in group commits, and only then
// acks each device's contiguous high-water mark.
package ingest

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/identity"
	"linli/shared/wire"
)

// Transport is the hub's connection to the broker: the embedded broker's
// inline client or an MQTT client of an external broker.
type Transport interface {
	// Subscribe calls h for every message matching filter. h may block to
	// apply backpressure; it must not call back into the transport.
	Subscribe(filter string, h func(topic string, payload []byte)) error
	// Publish sends payload at QoS 1 without waiting for delivery.
	Publish(topic string, payload []byte, retain bool) error
}

// Unsubscriber is implemented by transports that can end a subscription
// (both of the hub's do): a worker handing a site over then stops
// receiving it. Without it the site's messages still arrive and are
// dropped unacked.
type Unsubscriber interface {
	Unsubscribe(filter string) error
}

// Applier folds new events into the merged state inside the same commit;
// it is optional. Every Apply is followed by exactly one of Committed (the
// batch is durable) or Aborted (it is not; undo what Apply did).
type Applier interface {
	Apply(b store.Batch, bySite map[string][]event.Event) error
	Committed()
	Aborted()
}

// Downlink is the site change log edges mirror.
type Downlink interface {
	// Head is the last change seq of a site.
	Head(site string) uint64
	// CatchUp sends a device the changes after cursor.
	CatchUp(site, device string, cursor uint64) error
}

// Resync says which devices get a downlink snapshot at their next hello
// whatever cursor they report (after the hub's store was restored, a
// cursor may count changes this hub never had), and records that one
// took it.
type Resync interface {
	Needs(site, device string) bool
	// Done records the device as resynced; an error leaves it to resync
	// again at its next hello.
	Done(site, device string) error
}

// Horizon is, per device, the highest seq a completed backup covers.
type Horizon interface {
	// Of is the device's horizon within the seqs numbered above base
	// (each key of a replaced device numbers its own range); ok is false
	// when the hub takes no backups.
	Of(site, device string, base uint64) (seq uint64, ok bool)
}

// Keys knows enrolled devices' keys.
type Keys interface {
	// Key returns an enrolled device's public key and site. known is false
	// for an id that never enrolled; err is set for a revoked device.
	Key(id string) (pub ed25519.PublicKey, site string, known bool, err error)
}

// Generations is optionally implemented by Keys for device ids whose
// device was replaced: each key numbers its own span of seqs.
type Generations interface {
	// Generation returns the seq base of id's current key (it signs seqs
	// above it) and the keys of the devices it replaced.
	Generation(id string) (base uint64, past []PastKey)
}

// PastKey is a replaced device's key: it still signs the events it
// numbered, From < seq <= Below.
type PastKey struct {
	Pub         ed25519.PublicKey
	From, Below uint64
}

// Identity states told to an edge on its ack topic.
const (
	IdentityReplaced = "replaced"
	IdentityRevoked  = "revoked"
)

// Options configure an Ingest.
type Options struct {
	// Store keeps the events and device records; an Applier's writes go
	// into the same batch, so the merged state commits with the events
	// it folds in either store.
	Store     Store
	Transport Transport
	Applier   Applier
	Downlink  Downlink
	Keys      Keys
	Resync    Resync // optional
	// Horizon is each device's backup horizon, sent in every ack;
	// optional (no horizon: the hub takes no backups).
	Horizon Horizon
	// AllowUnsigned accepts unsigned messages from devices that never
	// enrolled (loopback demo mode); enrolled devices must always sign.
	AllowUnsigned bool
	// Sign signs every ack with the hub's key, as the downlink is signed:
	// edges ignore acks they cannot verify. It also signs the acks that
	// tell an edge its identity was replaced or revoked.
	Sign   func(payload []byte) ([]byte, error)
	Clock  *hlc.Clock
	Logger *slog.Logger
	Sites  []string // sites this hub owns; empty means all, unless Leased
	// Leased: the sites owned change at run time, through AddSite and
	// RemoveSite, as this worker's site leases come and go; Sites are
	// those owned from the start (often none).
	Leased   bool
	Decoders int // decode workers (default GOMAXPROCS)
	MaxGroup int // most events in one group commit (default 20,000)
	Now      func() time.Time
}

// Ingest is the hub's receiving pipeline.
type Ingest struct {
	opts Options
	log  *slog.Logger

	in     chan inbound
	decode chan decoded
	// queued bounds the events decoded and not yet taken by the
	// committer (decodeQueue).
	queued *semaphore.Weighted

	mu      sync.Mutex
	devices map[string]*store.DeviceRecord // by device id
	// bySite lists each site's device ids: the seat policy asks for a
	// site's kiosks, for every site, every few seconds.
	bySite map[string][]string
	dirty  map[string]bool // device records to persist at the next commit
	// pending are the device records of groups prepared and not yet
	// committed, by device id: the next group builds on them, not on the
	// live records (pipeline.go).
	pending map[string]pendingRecord
	stats   Stats
	onEvent []func(site string, evs []event.Event)

	subscribed atomic.Bool
	// lastFailed: the writer's last group failed (pipeline.go).
	lastFailed atomic.Bool

	// owned are the sites whose messages are taken in and acked; nil
	// means every site. A message of any other site is neither stored nor
	// acked.
	ownMu sync.RWMutex
	owned map[string]bool
	// subMu orders subscription changes (AddSite, RemoveSite) with Run's
	// start; runCtx and running are Run's, under it.
	subMu   sync.Mutex
	runCtx  context.Context
	running bool
	// resyncing holds, by device, the head of the snapshot a device was
	// sent for Resync and has not reported applying yet.
	resyncing map[string]uint64
}

// Stats counts what ingest did.
type Stats struct {
	Messages    uint64
	Batches     uint64
	Events      uint64 // new events committed
	Duplicates  uint64
	Rejected    uint64 // messages refused (undecodable, wrong device, bad signature)
	NotOwned    uint64 // messages of sites this hub does not own, dropped unacked
	Forged      uint64 // of those, refused for their signature or sender
	Quarantined uint64 // events stored aside because they failed validation
	Commits     uint64
	CommitNanos uint64 // time spent in commit (sync)
}

type inbound struct {
	site, device, leaf string
	payload            []byte
	at                 time.Time
}

// grant is what the key that signed a message may do: number events in
// (base, below], and be acked from base.
type grant struct {
	base, below uint64
	past        bool // a replaced device's key
}

// decodeQueue is the most batches decoded and waiting for the committer.
// What bounds the queue is Ingest.queued, in events: up to a group of the
// largest size (Options.MaxGroup) waits while one is prepared and one
// commits. Bounded by batches alone (64), the queue held a group of
// 6,400 events when a thousand edges sent batches of 100: groups that
// small paid each commit's fixed costs (statements per site, a device
// record per edge, the fsync) four times as often as the catch-up's.
const decodeQueue = 1024

type decoded struct {
	weight       int64 // its share of Ingest.queued
	site, device string
	base         uint64 // the signer's seq base: its acks count from here
	batch        *wire.Batch
	events       []event.Event
	encoded      [][]byte
	invalid      []string // per event: "" or the validation error; nil when every event is valid
}

// setInvalid records why event i failed validation.
func (d *decoded) setInvalid(i int, reason string) {
	if d.invalid == nil {
		d.invalid = make([]string, len(d.events))
	}
	d.invalid[i] = reason
}

// invalidReason is why event i failed validation, or "".
func (d *decoded) invalidReason(i int) string {
	if d.invalid == nil {
		return ""
	}
	return d.invalid[i]
}

// New prepares an Ingest; Run starts it.
func New(opts Options) (*Ingest, error) {
	if opts.Decoders <= 0 {
		opts.Decoders = runtime.GOMAXPROCS(0)
	}
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = 20_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Store == nil {
		return nil, errors.New("ingest: no store")
	}
	in := &Ingest{
		opts: opts, log: opts.Logger,
		in:      make(chan inbound, 256),
		decode:  make(chan decoded, decodeQueue),
		queued:  semaphore.NewWeighted(int64(opts.MaxGroup)),
		devices: map[string]*store.DeviceRecord{},
		bySite:  map[string][]string{},
		dirty:   map[string]bool{},
		pending: map[string]pendingRecord{},

		resyncing: map[string]uint64{},
	}
	if len(opts.Sites) > 0 || opts.Leased {
		in.owned = map[string]bool{}
		for _, s := range opts.Sites {
			in.owned[s] = true
		}
	}
	recs, err := opts.Store.Devices()
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	for i := range recs {
		r := recs[i]
		r.Online = false // until its status says otherwise
		in.devices[r.ID] = &r
		in.bySite[r.Site] = append(in.bySite[r.Site], r.ID)
	}
	return in, nil
}

// OnEvents registers f to be called (on the committer goroutine, after the
// commit) with every batch of new events; f must not block.
func (in *Ingest) OnEvents(f func(site string, evs []event.Event)) {
	in.mu.Lock()
	in.onEvent = append(in.onEvent, f)
	in.mu.Unlock()
}

// Subscribed reports whether Run holds its subscriptions: from when they
// are all made until Run returns.
func (in *Ingest) Subscribed() bool { return in.subscribed.Load() }

// Owns reports whether the hub takes in and acks site's messages.
func (in *Ingest) Owns(site string) bool {
	in.ownMu.RLock()
	defer in.ownMu.RUnlock()
	return in.owned == nil || in.owned[site]
}

// Sites are the sites owned, sorted; nil when every site is.
func (in *Ingest) Sites() []string {
	in.ownMu.RLock()
	defer in.ownMu.RUnlock()
	if in.owned == nil {
		return nil
	}
	out := make([]string, 0, len(in.owned))
	for s := range in.owned {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func siteFilters(site string) []string {
	return []string{wire.SiteFilter(site, wire.LeafUp), wire.SiteFilter(site, wire.LeafStatus)}
}

// ErrStaticSites is returned by AddSite and RemoveSite of an ingest
// without Options.Leased.
var ErrStaticSites = errors.New("ingest: the sites owned are fixed (Options.Leased is off)")

// AddSite takes site on (its lease was acquired): the device records of
// the site are read again from the store, since another worker may have
// taken the site's events in meanwhile, then its messages are taken in
// and acked, and, while Run runs, its topics subscribed to.
func (in *Ingest) AddSite(site string) error { return in.AddSites([]string{site}) }

// AddSites is AddSite for many sites at once: one read of the device
// records, and one SUBSCRIBE for all their topics where the transport
// can (a MultiSubscriber). On an error none of the sites is taken on.
func (in *Ingest) AddSites(sites []string) error {
	if !in.opts.Leased {
		return ErrStaticSites
	}
	for _, site := range sites {
		if err := event.ValidID(site); err != nil {
			return fmt.Errorf("ingest: add site: %w", err)
		}
	}
	in.subMu.Lock()
	defer in.subMu.Unlock()
	var add []string
	for _, site := range sites {
		if !in.Owns(site) && !slices.Contains(add, site) {
			add = append(add, site)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := in.reloadSites(add); err != nil {
		return fmt.Errorf("ingest: add sites %v: %w", add, err)
	}
	// Owned before subscribed, so the first messages are taken in; an
	// error undoes it: none of the sites is taken in, and their leases
	// are handed back.
	in.ownMu.Lock()
	for _, site := range add {
		in.owned[site] = true
	}
	in.ownMu.Unlock()
	if !in.running {
		return nil // Run subscribes
	}
	var filters []string
	for _, site := range add {
		filters = append(filters, siteFilters(site)...)
	}
	if err := in.subscribe(in.runCtx, filters); err != nil {
		in.ownMu.Lock()
		for _, site := range add {
			delete(in.owned, site)
		}
		in.ownMu.Unlock()
		return fmt.Errorf("ingest: add sites %v: %w", add, err)
	}
	return nil
}

// RemoveSite gives site up (its lease was lost or handed over): from its
// return, nothing of the site is stored or acked, not even what was
// received before; and its topics are unsubscribed from when the
// transport can.
func (in *Ingest) RemoveSite(site string) error {
	if !in.opts.Leased {
		return ErrStaticSites
	}
	in.subMu.Lock()
	defer in.subMu.Unlock()
	in.ownMu.Lock()
	had := in.owned[site]
	delete(in.owned, site)
	in.ownMu.Unlock()
	if !had {
		return nil
	}
	// Presence changes not written yet are the next owner's to make: a
	// record written from here could set back what it stored.
	in.mu.Lock()
	for id := range in.dirty {
		if d := in.devices[id]; d != nil && d.Site == site {
			delete(in.dirty, id)
		}
	}
	for id := range in.resyncing {
		if d := in.devices[id]; d != nil && d.Site == site {
			delete(in.resyncing, id)
		}
	}
	in.mu.Unlock()
	u, ok := in.opts.Transport.(Unsubscriber)
	if !in.running || !ok {
		return nil
	}
	for _, f := range siteFilters(site) {
		if err := u.Unsubscribe(f); err != nil {
			return fmt.Errorf("ingest: remove site %s: %w", site, err)
		}
	}
	return nil
}

// reloadSites replaces the device records of sites with the stored
// ones, from one read of the store.
func (in *Ingest) reloadSites(sites []string) error {
	recs, err := in.opts.Store.Devices()
	if err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	want := make(map[string]bool, len(sites))
	for _, s := range sites {
		want[s] = true
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for id, d := range in.devices {
		if want[d.Site] {
			delete(in.devices, id)
			delete(in.dirty, id)
			delete(in.pending, id)
		}
	}
	// Each site's index is rebuilt with its records: a record seen only
	// in memory (its commit fenced) is gone, and one another worker
	// stored meanwhile is new; SiteDevices reads the index.
	ids := make(map[string][]string, len(sites))
	for i := range recs {
		if !want[recs[i].Site] {
			continue
		}
		r := recs[i]
		r.Online = false // until its status says otherwise
		in.devices[r.ID] = &r
		ids[r.Site] = append(ids[r.Site], r.ID)
	}
	for _, s := range sites {
		in.bySite[s] = ids[s]
	}
	return nil
}

// MultiSubscriber is implemented by transports that subscribe to many
// filters in one request (the external broker's client: one SUBSCRIBE
// and one round trip for a batch of sites taken on).
type MultiSubscriber interface {
	SubscribeMany(filters []string, h func(topic string, payload []byte)) error
}

func (in *Ingest) subscribe(ctx context.Context, filters []string) error {
	if ms, ok := in.opts.Transport.(MultiSubscriber); ok && len(filters) > 1 {
		if err := ms.SubscribeMany(filters, func(topic string, payload []byte) {
			in.receive(ctx, topic, payload)
		}); err != nil {
			return fmt.Errorf("subscribe %d filters: %w", len(filters), err)
		}
		return nil
	}
	for _, f := range filters {
		if err := in.opts.Transport.Subscribe(f, func(topic string, payload []byte) {
			in.receive(ctx, topic, payload)
		}); err != nil {
			return fmt.Errorf("subscribe %s: %w", f, err)
		}
	}
	return nil
}

// Run subscribes and processes messages until ctx ends.
func (in *Ingest) Run(ctx context.Context) error {
	in.subMu.Lock()
	filters := []string{wire.UpFilter, wire.StatusFilter}
	if sites := in.Sites(); sites != nil {
		filters = filters[:0]
		for _, s := range sites {
			filters = append(filters, siteFilters(s)...)
		}
	}
	if err := in.subscribe(ctx, filters); err != nil {
		in.subMu.Unlock()
		return err
	}
	in.runCtx, in.running = ctx, true
	in.subMu.Unlock()
	defer func() {
		in.subMu.Lock()
		in.running = false
		in.subMu.Unlock()
	}()
	in.subscribed.Store(true)
	defer in.subscribed.Store(false)
	var wg sync.WaitGroup
	dctx, stopDecoders := context.WithCancel(context.Background())
	for range in.opts.Decoders {
		wg.Add(1)
		go func() { defer wg.Done(); in.decodeLoop(dctx) }()
	}
	done := make(chan struct{})
	go func() { defer close(done); in.commitLoop() }()
	<-ctx.Done()
	// Stop in order: no new input, decoders drain, the committer commits
	// what was decoded and acks it.
	stopDecoders()
	wg.Wait()
	close(in.decode)
	<-done
	return nil
}

// receive runs on the broker's or MQTT client's goroutine.
func (in *Ingest) receive(ctx context.Context, topic string, payload []byte) {
	site, device, leaf, err := wire.ParseTopic(topic)
	if err != nil || device == wire.AllDevices {
		in.log.Warn("message on a bad topic dropped", "topic", topic, "err", err)
		return
	}
	if !in.Owns(site) {
		in.count(func(s *Stats) { s.NotOwned++ })
		return
	}
	msg := inbound{site: site, device: device, leaf: leaf, payload: slices.Clone(payload), at: in.opts.Now()}
	if leaf == wire.LeafStatus {
		in.status(msg)
		return
	}
	if leaf != wire.LeafUp {
		return
	}
	select { // blocking here slows the sender: backpressure, not loss
	case in.in <- msg:
	case <-ctx.Done():
	}
}

func (in *Ingest) status(m inbound) {
	if len(m.payload) == 0 {
		return // a cleared retained status (a revoked device's)
	}
	if in.revoked(m.device) {
		// A revoked device's will or retained status must not bring it
		// back online.
		return
	}
	st, err := wire.DecodeStatus(m.payload)
	if err != nil {
		in.log.Warn("bad status message", "device", m.device, "err", err)
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	d := in.device(m.site, m.device)
	if d == nil {
		return
	}
	d.Online = st.Online
	d.LastSeen = m.at
	if st.Role != "" {
		d.Role = st.Role
	}
	if st.Version != "" {
		d.Version = st.Version
	}
	in.dirty[d.ID] = true
}

// revoked reports whether id is an enrolled device that was revoked.
func (in *Ingest) revoked(id string) bool {
	if in.opts.Keys == nil {
		return false
	}
	_, _, known, err := in.opts.Keys.Key(id)
	return known && err != nil
}

// SetOffline marks a device offline at once, whatever its connection last
// said (a revoked device).
func (in *Ingest) SetOffline(id string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if d, ok := in.devices[id]; ok && d.Online {
		d.Online = false
		in.dirty[id] = true
	}
}

// device returns the record of a device, creating it on first contact;
// nil if the device id is already registered under another site.
// Callers hold in.mu.
func (in *Ingest) device(site, id string) *store.DeviceRecord {
	d, ok := in.devices[id]
	if !ok {
		d = &store.DeviceRecord{ID: id, Site: site, First: in.opts.Now()}
		in.devices[id] = d
		in.bySite[site] = append(in.bySite[site], id)
		in.dirty[id] = true
		return d
	}
	if d.Site != site {
		in.log.Warn("device publishes under a site it does not belong to", "device", id, "site", site, "registered", d.Site)
		return nil
	}
	return d
}

func (in *Ingest) decodeLoop(ctx context.Context) {
	for {
		var m inbound
		select {
		case <-ctx.Done():
			return
		case m = <-in.in:
		}
		if !in.Owns(m.site) { // given up since it was received
			in.count(func(s *Stats) { s.NotOwned++ })
			continue
		}
		in.count(func(s *Stats) { s.Messages++ })
		payload, g, err := in.verify(m)
		if err != nil {
			in.count(func(s *Stats) { s.Forged++ })
			in.reject(m, err)
			if errors.Is(err, errRevoked) {
				in.tell(m.site, m.device, 0, IdentityRevoked)
			}
			continue
		}
		up, err := wire.DecodeUp(payload)
		if err != nil {
			in.reject(m, err)
			continue
		}
		if up.Hello != nil {
			in.hello(m, up.Hello, g)
			continue
		}
		if up.DownAck != nil {
			in.downAck(m, up.DownAck)
			continue
		}
		evs, encoded, err := up.Batch.OpenRaw(m.device)
		if err != nil {
			in.reject(m, err)
			continue
		}
		if up.Batch.From <= g.base && g.past || up.Batch.To > g.below {
			in.count(func(s *Stats) { s.Forged++ })
			in.reject(m, fmt.Errorf("batch %d-%d is outside the seqs %d-%d its key numbers", up.Batch.From, up.Batch.To, g.base+1, g.below))
			continue
		}
		d := decoded{site: m.site, device: m.device, base: g.base, batch: up.Batch, events: evs, encoded: encoded}
		for i := range evs {
			if evs[i].Kind.IsHub() {
				d.setInvalid(i, "kind "+evs[i].Kind.String()+" is the hub's own; edges never send it")
			} else if err := evs[i].Validate(); err != nil {
				d.setInvalid(i, err.Error())
			}
			if d.encoded[i] != nil {
				continue // stored as it came: the edge's own stored form
			}
			stored := evs[i]
			stored.Device = ""
			if d.encoded[i], err = stored.Encode(); err != nil {
				d.setInvalid(i, err.Error())
			}
		}
		if up.Batch.Clock != 0 {
			in.opts.Clock.Observe(up.Batch.Clock)
		}
		d.weight = int64(min(len(d.events), in.opts.MaxGroup))
		if err := in.queued.Acquire(ctx, d.weight); err != nil {
			return
		}
		select {
		case in.decode <- d:
		case <-ctx.Done():
			in.queued.Release(d.weight)
			return
		}
	}
}

// verify checks the signature of a message against the sender's enrolled
// key and returns the signed payload. Nothing unverified reaches the merge.
func (in *Ingest) verify(m inbound) ([]byte, grant, error) {
	var (
		pub   ed25519.PublicKey
		site  string
		known bool
		err   error
	)
	all := grant{below: math.MaxUint64}
	if in.opts.Keys != nil {
		pub, site, known, err = in.opts.Keys.Key(m.device)
	}
	if known {
		if err != nil {
			return nil, all, fmt.Errorf("%w: %v", errRevoked, err)
		}
		if site != m.site {
			return nil, all, fmt.Errorf("device is enrolled in site %s, not %s", site, m.site)
		}
		if !identity.IsSigned(m.payload) {
			return nil, all, errors.New("unsigned message from an enrolled device")
		}
		gens, _ := in.opts.Keys.(Generations)
		var past []PastKey
		if gens != nil {
			all.base, past = gens.Generation(m.device)
		}
		payload, err := identity.Open(m.payload, pub, m.device)
		if err == nil {
			return payload, all, nil
		}
		// A replaced device delivering what it numbered before.
		for _, k := range past {
			if p, perr := identity.Open(m.payload, k.Pub, m.device); perr == nil {
				return p, grant{base: k.From, below: k.Below, past: true}, nil
			}
		}
		return nil, all, err
	}
	if !in.opts.AllowUnsigned {
		return nil, all, errors.New("device is not enrolled")
	}
	if identity.IsSigned(m.payload) {
		return nil, all, errors.New("signed message from a device that is not enrolled")
	}
	return m.payload, all, nil
}

// errRevoked marks a message refused because its device is revoked.
var errRevoked = errors.New("revoked")

// tell sends a device a signed ack saying what became of its identity: a
// replaced device delivering its backlog, a revoked one still connected
// to an external broker. The edge confirms it with the hub over HTTPS.
func (in *Ingest) tell(site, device string, base uint64, state string) {
	if in.opts.Sign == nil || !in.Owns(site) {
		return
	}
	payload, err := wire.Encode(wire.Ack{Device: device, Base: base, Identity: state, Clock: in.opts.Clock.Now()})
	if err == nil {
		payload, err = in.opts.Sign(payload)
	}
	if err != nil {
		in.log.Error("encode identity ack", "err", err)
		return
	}
	if err := in.opts.Transport.Publish(wire.Topic(site, device, wire.LeafAck), payload, false); err != nil {
		in.log.Warn("publish identity ack", "device", device, "err", err)
	}
}

// ackedFrom is the high-water mark of d's seqs counted from base: every
// seq in (base, mark] is held.
func ackedFrom(d *store.DeviceRecord, base uint64) uint64 { return d.AckedFrom(base) }

func (in *Ingest) reject(m inbound, err error) {
	in.count(func(s *Stats) { s.Rejected++ })
	in.log.Warn("message refused", "site", m.site, "device", m.device, "err", err)
}

func (in *Ingest) hello(m inbound, h *wire.Hello, g grant) {
	in.opts.Clock.Observe(h.Clock)
	in.mu.Lock()
	d := in.device(m.site, m.device)
	if d == nil {
		in.mu.Unlock()
		return
	}
	d.Role, d.Version = h.Role, h.Version
	d.Online, d.LastSeen = true, m.at
	d.Pending, d.LastSeq = h.Pending, h.LastSeq
	d.Oldest = time.Time{}
	if h.Oldest != 0 {
		d.Oldest = h.Oldest.Time()
	}
	skew := hlc.Skew(h.Clock, m.at).Milliseconds()
	d.SkewMs = skew
	d.Down = h.DownCursor
	d.CA = h.CA
	// An edge that no longer holds the seqs the hub lacks (deleted before
	// a backup covered them, and the hub was restored from that backup)
	// will never send them: record the hole once and take what follows.
	// Only within the range of the key that said hello: a replacement
	// numbers from its own base, a replaced device up to its last seq.
	var lost uint64
	if h.First > 0 {
		first := min(h.First, h.LastSeq+1)
		if g.past {
			first = min(first, g.below+1)
		}
		lost = d.Lose(g.base, first)
	}
	acked, totalLost := ackedFrom(d, g.base), d.Lost
	in.dirty[d.ID] = true
	in.mu.Unlock()
	if lost > 0 {
		in.log.Error("device no longer holds events this hub lacks; recorded as lost", "device", m.device, "site", m.site,
			"lost", lost, "lost_total", totalLost, "first_held", h.First, "acked", acked)
	}
	if abs(skew) > int64(5*time.Minute/time.Millisecond) {
		in.log.Warn("edge clock is far off; merging by HLC anyway", "device", m.device, "skew_ms", skew)
	}
	in.ack(m.site, m.device, g.base, acked, true)
	if g.past {
		in.tell(m.site, m.device, g.base, IdentityReplaced)
	}
	if !in.enrolled(m.device) {
		return
	}
	if in.opts.Resync != nil && in.opts.Downlink != nil && in.opts.Resync.Needs(m.site, m.device) {
		head := in.opts.Downlink.Head(m.site)
		in.mu.Lock()
		in.resyncing[m.device] = head
		in.mu.Unlock()
		in.log.Info("device resyncs its downlink after the hub's restore", "device", m.device, "cursor", h.DownCursor, "head", head)
		// A cursor beyond the head asks for a snapshot.
		in.catchUp(m.site, m.device, math.MaxUint64, true)
		return
	}
	in.catchUp(m.site, m.device, h.DownCursor, false)
}

// enrolled reports whether a device may have its site's downlink. A device
// that never enrolled (loopback demo mode) is any id anyone picks: it
// syncs up only, and nothing of the site is sent to it. Without Keys (a
// hub with no registry) every device is taken as the site's.
func (in *Ingest) enrolled(device string) bool {
	if in.opts.Keys == nil {
		return true
	}
	_, _, known, err := in.opts.Keys.Key(device)
	return known && err == nil
}

func (in *Ingest) downAck(m inbound, a *wire.DownAck) {
	in.mu.Lock()
	d := in.device(m.site, m.device)
	if d == nil {
		in.mu.Unlock()
		return
	}
	d.Down, d.LastSeen = a.Cursor, m.at
	in.dirty[d.ID] = true
	// A report of a cursor at or past the snapshot's head, made after
	// applying (not asking), says the resync snapshot was taken.
	head, resyncing := in.resyncing[d.ID]
	resynced := resyncing && !a.CatchUp && a.Cursor >= head
	if resynced {
		delete(in.resyncing, d.ID)
	}
	in.mu.Unlock()
	if resynced {
		if err := in.opts.Resync.Done(m.site, m.device); err != nil {
			in.log.Warn("record downlink resync", "device", m.device, "err", err)
		}
	}
	// A plain report only moves the cursor. Under a steady stream the
	// cursor always trails the head by the messages in flight, and sending
	// everything after it again on every report sent the site's stream
	// twice (and read it back from disk each time). An edge asks when it
	// sees a gap or learns from an ack that it is behind.
	if a.CatchUp && in.enrolled(m.device) {
		in.catchUp(m.site, m.device, a.Cursor, true)
	}
}

// catchUp sends a device what it misses of its site's downlink.
func (in *Ingest) catchUp(site, device string, cursor uint64, asked bool) {
	if in.opts.Downlink == nil || !in.Owns(site) {
		return
	}
	if !asked && cursor == in.opts.Downlink.Head(site) {
		return
	}
	if err := in.opts.Downlink.CatchUp(site, device, cursor); err != nil {
		in.log.Warn("downlink catch-up", "device", device, "err", err)
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// ack answers the key numbering above base: a device and the device it
// replaced share the id's ack topic, and each takes only its own base's.
func (in *Ingest) ack(site, device string, base, acked uint64, hello bool) {
	if !in.Owns(site) {
		// Given up meanwhile: the next owner acks what is stored, from
		// the device records it reads.
		return
	}
	a := wire.Ack{Acked: acked, Hello: hello, Clock: in.opts.Clock.Now(), Device: device, Base: base}
	if in.opts.Horizon != nil {
		if h, ok := in.opts.Horizon.Of(site, device, base); ok {
			h = min(max(h, base), acked) // within this key's range
			a.Horizon = &h
		}
	}
	if in.opts.Downlink != nil && in.enrolled(device) {
		a.DownHead = in.opts.Downlink.Head(site)
	}
	payload, err := wire.Encode(a)
	if err == nil && in.opts.Sign != nil {
		payload, err = in.opts.Sign(payload)
	}
	if err != nil {
		in.log.Error("encode ack", "err", err)
		return
	}
	if err := in.opts.Transport.Publish(wire.Topic(site, device, wire.LeafAck), payload, false); err != nil {
		in.log.Warn("publish ack", "device", device, "err", err)
	}
}

func copyRecord(d *store.DeviceRecord) *store.DeviceRecord {
	c := *d
	c.Above = slices.Clone(d.Above)
	c.Gaps = slices.Clone(d.Gaps)
	return &c
}

func (in *Ingest) requeueDirty(work map[string]*store.DeviceRecord) {
	in.mu.Lock()
	for id := range work {
		in.dirty[id] = true
	}
	in.mu.Unlock()
}

func (in *Ingest) count(f func(*Stats)) {
	in.mu.Lock()
	f(&in.stats)
	in.mu.Unlock()
}

// Stats returns a copy of the counters.
func (in *Ingest) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stats
}

// Devices returns copies of every device record, sorted by id.
func (in *Ingest) Devices() []store.DeviceRecord {
	in.mu.Lock()
	out := make([]store.DeviceRecord, 0, len(in.devices))
	for _, d := range in.devices {
		c := *d
		c.Above = slices.Clone(d.Above)
		out = append(out, c)
	}
	in.mu.Unlock()
	slices.SortFunc(out, func(a, b store.DeviceRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// SiteDevices returns copies of the records of one site's devices, sorted
// by id. It costs that site's devices, however many the hub has: the seat
// policy calls it for every site while it holds the merged state's write
// lock, and copying and sorting every record for each of 500 sites held
// that lock for seconds, the ingest's commits waiting behind it.
func (in *Ingest) SiteDevices(site string) []store.DeviceRecord {
	in.mu.Lock()
	ids := in.bySite[site]
	out := make([]store.DeviceRecord, 0, len(ids))
	for _, id := range ids {
		d := in.devices[id]
		c := *d
		c.Above = slices.Clone(d.Above)
		out = append(out, c)
	}
	in.mu.Unlock()
	slices.SortFunc(out, func(a, b store.DeviceRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Device returns a copy of one device's record.
func (in *Ingest) Device(id string) (store.DeviceRecord, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	d, ok := in.devices[id]
	if !ok {
		return store.DeviceRecord{}, false
	}
	c := *d
	c.Above = slices.Clone(d.Above)
	return c, true
}
