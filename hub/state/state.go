// Package state holds the hub's merged community state: it folds committed
// edge events and the hub's own decisions through shared/merge, keeps the
// facts it needs to rebuild after a restart, sends changed entities down
// through the downlink, and runs the seat policy.
package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"linli/hub/downlink"
	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/merge"
	"linli/shared/wire"
)

// Key layout:
//
//	f/{site}/{device}/{seq:8}   facts the merge folds. For an edge's events,
//	                            the seqs (a CBOR array, from seq on) of the
//	                            device's facts in one commit: the events are
//	                            stored once, by ingest, under the same site
//	                            and device. For the hub's own decisions (and
//	                            every fact of older hubs) {site, event}.
//	h/seq                       the hub's own event counter
const (
	prefixFact = store.PrefixFact
	keyHubSeq  = "h/seq"
)

// Kiosks lists the kiosk devices of a site (for seat grants).
type Kiosks func(site string) []string

// Options configure a State.
type Options struct {
	Store    store.Backend
	Downlink *downlink.Log
	Clock    *hlc.Clock
	HubID    string // device id of the hub's own events
	Kiosks   Kiosks
	Policy   merge.Policy
	Logger   *slog.Logger
	// DecideEvery runs the seat policy for every site this often, so new
	// kiosks get shares without waiting for an event (default 2s).
	DecideEvery time.Duration
	// SnapshotEvery writes the merged state's snapshot this often while
	// Run runs, and once more when it stops; 0 never writes one (a start
	// still reads one that is there).
	SnapshotEvery time.Duration
	// Build names the hub's build: a snapshot another build wrote is not
	// trusted (its merge rules may differ), and the state is rebuilt.
	Build string
	// Hold is how long a resolved or rejected report, or an ended
	// activity, stays in memory after its last change; then the snapshot
	// moves it to the archive in the store (archive.go), from where a
	// later fact or a query reads it. 0 keeps every entity in memory.
	Hold time.Duration
	// Owns says whether this hub decides for a site: nil for a hub
	// alone, which decides for every site. With site leases, the sites
	// this worker holds: the seat policy runs for those only, operator
	// decisions for any other are refused (NotOwnedError), the hub's
	// event counter is the worker's own (under its HubID, so two workers
	// never number two decisions alike), and Follow folds the other
	// workers' facts.
	Owns func(site string) bool
}

// State is the hub's merged state. Reads are safe from any goroutine;
// writes are serialised (one commit at a time).
type State struct {
	opts Options
	log  *slog.Logger

	// writeMu is held from Apply to Committed/Aborted (while ingest's
	// pipeline has groups in flight: from the first Apply to the last
	// one's end) and around every other write, so the merged state and
	// the store move together. Other writers take it with lockWrite.
	writeMu sync.Mutex
	// writers counts the writers waiting for writeMu other than ingest's
	// pipeline: while one waits, Overlap lets the pipeline drain.
	writers atomic.Int32
	// inflight is the groups applied and not yet committed or aborted;
	// pipeMu guards it.
	pipeMu   sync.Mutex
	inflight int
	// decideDue is when the first of the pending seat decisions was
	// staged: the seat policy runs only once the pipeline drains, and
	// Overlap lets it drain when one has waited decideWait.
	decideDue time.Time

	mu     sync.RWMutex
	merged *merge.State
	hubSeq uint64
	sites  map[string]bool

	pendingSites map[string]bool
	erased       map[string]string // site/resident → token
	loadRead     int               // fact keys the last load read

	follow follower // guarded by writeMu
}

// Errors.
var (
	ErrNotFound = merge.ErrNotFound
	ErrInvalid  = errors.New("invalid")
)

// Open rebuilds the merged state from the stored facts.
func Open(opts Options) (*State, error) {
	if opts.Policy == (merge.Policy{}) {
		opts.Policy = merge.DefaultPolicy
	}
	if opts.DecideEvery <= 0 {
		opts.DecideEvery = 2 * time.Second
	}
	s := &State{opts: opts, log: opts.Logger, sites: map[string]bool{}}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

type storedFact struct {
	Site  string `cbor:"1,keyasint"`
	Event []byte `cbor:"2,keyasint"`
}

// load rebuilds the merged state: from the snapshot and the facts stored
// after it when there is a snapshot to trust, otherwise (logged) from
// every stored fact.
func (s *State) load() error {
	start := time.Now()
	var m *merge.State
	sites := map[string]bool{}
	var hubSeq, since uint64
	n, read, snapBytes := 0, 0, 0
	rebuilt := false
	mark, err := s.opts.Store.ReadMark()
	if err != nil {
		return fmt.Errorf("load merged state: %w", err)
	}
	loadedAt := time.Now()
	err = s.opts.Store.View(func(v store.View) error {
		var err error
		if hubSeq, err = store.GetU64(v, s.hubSeqKey()); err != nil {
			return err
		}
		erased, err := loadErased(v)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.erased = erased
		s.mu.Unlock()
		snap, head, err := s.readSnapshot(v)
		switch {
		case err == nil:
			m, since, snapBytes = snap, head.ReadTs, head.Size
			for _, site := range head.Sites {
				sites[site] = true
			}
			// The facts after the snapshot may touch archived entities.
			// With none archived (yet), each new entity would cost a
			// lookup that misses: a first start folding a whole
			// history took twice as long.
			if has, err := hasArchived(v); err != nil {
				return err
			} else if has {
				m.SetArchive(archive{db: s.opts.Store, log: s.log})
			}
		case errors.Is(err, errNoSnapshot):
			m, rebuilt = merge.New(), true
		default:
			s.log.Warn("merged state snapshot not used; rebuilding from every fact", "err", err)
			m, rebuilt = merge.New(), true
		}
		batch := make([]merge.Fact, 0, 4096)
		flush := func() {
			if _, err := m.ApplyBatch(batch); err != nil {
				s.log.Warn("stored facts the merge refused", "err", err)
			}
			batch = batch[:0]
		}
		// Only the fact keys written after the snapshot: stepping over
		// each fact key of years of history took 1.3 s of a start with
		// 10,000,000 stored events.
		err = v.Scan([]byte(prefixFact), nil, since, func(key, val []byte, _ uint64) (bool, error) {
			read++
			fs, _, err := readFacts(v, key, val)
			if err != nil {
				return false, err
			}
			for _, f := range fs {
				batch = append(batch, f)
				sites[f.Site] = true
				n++
				if len(batch) == cap(batch) {
					flush()
				}
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		flush()
		return nil
	})
	if err != nil {
		return fmt.Errorf("load merged state: %w", err)
	}
	if rebuilt {
		// Every entity is in memory now, folded by this build's rules
		// from the facts as they are (an erasure rewrites them).
		if err := s.dropArchive(); err != nil {
			return fmt.Errorf("load merged state: %w", err)
		}
	}
	s.mu.Lock()
	s.merged, s.sites, s.hubSeq = m, sites, hubSeq
	s.loadRead = read
	s.mu.Unlock()
	s.follow.reset(loadedAt, mark)
	s.log.Info("merged state loaded", "facts", n, "snapshot", since != 0, "snapshot_bytes", snapBytes, "fact_keys_read", read,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// isFact says whether the merge needs an event kept as a fact. Telemetry
// (readings, gaps, ordinary door decisions) is stored by ingest but never
// folded.
func isFact(ev *event.Event) bool {
	switch ev.Kind {
	case event.KindReading, event.KindGap:
		return false
	case event.KindAccess:
		// Most access events are plain door decisions: a body without the
		// text "forced" or "held_open" anywhere cannot hold those results,
		// and needs no decoding to tell (a catch-up brings hundreds of
		// thousands).
		if !bytes.Contains(ev.Body, forced) && !bytes.Contains(ev.Body, heldOpen) {
			return false
		}
		b, err := ev.Decode()
		if err != nil {
			return false
		}
		r := b.(*event.Access).Result
		return r == "forced" || r == "held_open"
	}
	return true
}

var forced, heldOpen = []byte("forced"), []byte("held_open")

// NeedsEvent says whether the merged state needs a stored edge event to
// rebuild at start: its fact refers to the event where ingest stored it,
// so retention must not delete it (a forced or held-open door opens an
// alarm; a plain door decision or a reading is never folded).
func NeedsEvent(site string, ev *event.Event) bool { return isFact(ev) }

func factKey(site, device string, seq uint64) []byte {
	return kv.Key(prefixFact, []byte(site+"/"+device+"/"), kv.U64(seq))
}

// parseFactKey splits a fact key into its site, device and seq. Site and
// device ids never hold a slash (they are MQTT topic levels).
func parseFactKey(key []byte) (site, device string, seq uint64, ok bool) {
	rest := key[len(prefixFact):]
	if len(rest) < 8+4 || rest[len(rest)-9] != '/' {
		return "", "", 0, false
	}
	site, device, ok = strings.Cut(string(rest[:len(rest)-9]), "/")
	if !ok || site == "" || device == "" {
		return "", "", 0, false
	}
	return site, device, kv.ParseU64(rest[len(rest)-8:]), true
}

// readFacts decodes the facts stored at key: the hub's decision val holds,
// or the edge events it refers to, read in v (facts and events sort
// alike, so a whole scan reads events in key order). embedded says the fact holds
// its event itself (a hub decision, or an edge event's fact as older hubs
// wrote it), so a rewrite of the event must rewrite the fact too.
func readFacts(events store.View, key, val []byte) (facts []merge.Fact, embedded bool, err error) {
	site, device, seq, ok := parseFactKey(key)
	if !ok {
		return nil, false, fmt.Errorf("fact %q: malformed key", key)
	}
	seqs := []uint64{seq} // an empty value refers to the key's own seq
	switch {
	case event.IsArray(val): // seqs of the device's events
		if err := event.UnmarshalOwn(val, &seqs); err != nil {
			return nil, false, fmt.Errorf("fact %q: %w", key, err)
		}
	case len(val) > 0: // {site, event}
		var sf storedFact
		if err := event.UnmarshalOwn(val, &sf); err != nil {
			return nil, false, fmt.Errorf("fact %q: %w", key, err)
		}
		ev, err := event.DecodeEvent(sf.Event)
		if err != nil {
			return nil, false, fmt.Errorf("fact %q: %w", key, err)
		}
		return []merge.Fact{{Site: sf.Site, Event: ev}}, true, nil
	}
	out := make([]merge.Fact, 0, len(seqs))
	for _, seq := range seqs {
		ev, err := events.Event(site, device, seq)
		if errors.Is(err, store.ErrNotFound) {
			return nil, false, fmt.Errorf("fact %q: event %s.%d is not in the store", key, device, seq)
		}
		if err != nil {
			return nil, false, fmt.Errorf("fact %q: %w", key, err)
		}
		out = append(out, merge.Fact{Site: site, Event: ev})
	}
	return out, false, nil
}

// Apply folds new edge events into the state inside ingest's commit.
// The write lock is held from the first Apply until the Committed or
// Aborted that leaves no group in flight: ingest may apply its next group
// while one commits (Overlap).
func (s *State) Apply(b store.Batch, bySite map[string][]event.Event) error {
	s.pipeMu.Lock()
	if s.inflight == 0 {
		// Only ingest's committer applies, so nothing else changes
		// inflight from 0 while pipeMu is let go.
		s.pipeMu.Unlock()
		s.writeMu.Lock()
		s.pipeMu.Lock()
	}
	s.inflight++
	s.pipeMu.Unlock()
	n := 0
	for _, evs := range bySite {
		n += len(evs)
	}
	facts := make([]merge.Fact, 0, n) // sized once: a catch-up's group holds thousands
	for _, site := range slices.Sorted(maps.Keys(bySite)) {
		for i := range bySite[site] {
			ev := &bySite[site][i]
			if !isFact(ev) {
				continue
			}
			if err := s.scrubArrivals(b, site, ev); err != nil {
				return err
			}
			facts = append(facts, merge.Fact{Site: site, Event: *ev})
		}
	}
	if err := putEdgeFacts(b, facts); err != nil {
		return err
	}
	return s.fold(b, facts)
}

// putEdgeFacts records edge events as facts: one key per device and
// commit listing their seqs, since each event is already in b under the
// same site, device and seq (ingest stores it before Apply; an erasure
// rewrites it in place). A third of a catch-up's events are facts: a copy
// of each was a fifth of the hub's writes, and a key of each a quarter of
// its Badger inserts. facts are in site, device, seq order.
func putEdgeFacts(b store.Batch, facts []merge.Fact) error {
	for i := 0; i < len(facts); {
		j := i
		var seqs []uint64
		for ; j < len(facts) && facts[j].Site == facts[i].Site && facts[j].Event.Device == facts[i].Event.Device; j++ {
			seqs = append(seqs, facts[j].Event.Seq)
		}
		val, err := event.Marshal(seqs)
		if err != nil {
			return fmt.Errorf("encode facts: %w", err)
		}
		b.Set(factKey(facts[i].Site, facts[i].Event.Device, seqs[0]), val)
		i = j
	}
	return nil
}

// putFact records a fact with its event in it: the hub's decisions, which
// are stored nowhere else. An edge event's fact refers to the event where
// ingest stored it instead (putEdgeFacts).
func (s *State) putFact(b store.Batch, site string, ev *event.Event) error {
	data, err := ev.Encode()
	if err != nil {
		return fmt.Errorf("encode fact: %w", err)
	}
	val, err := event.Marshal(storedFact{Site: site, Event: data})
	if err != nil {
		return fmt.Errorf("encode fact: %w", err)
	}
	b.Set(factKey(site, ev.Device, ev.Seq), val)
	return nil
}

// fold applies facts in memory and stages the changed entities' views in
// the downlink. Callers hold writeMu and commit b afterwards.
func (s *State) fold(b store.Batch, facts []merge.Fact) error {
	if len(facts) == 0 {
		return nil
	}
	s.mu.Lock()
	refs, err := s.merged.ApplyBatch(facts)
	if errors.Is(err, merge.ErrArchive) {
		// An entity the facts touch could not be read back: what folded
		// is not the whole entity, and must not be committed or sent.
		s.mu.Unlock()
		return err
	}
	for _, f := range facts {
		if f.Site != "" {
			s.sites[f.Site] = true
		}
	}
	changes := map[string][]wire.Change{}
	for _, r := range refs {
		if r.Site == "" {
			continue // not placed yet (a vote before its report)
		}
		changes[r.Site] = append(changes[r.Site], s.changesFor(r)...)
	}
	if s.pendingSites == nil {
		s.pendingSites = map[string]bool{}
	}
	if len(s.pendingSites) == 0 {
		s.decideDue = time.Now()
	}
	for _, r := range refs {
		if r.Kind == merge.RefActivity && r.Site != "" {
			s.pendingSites[r.Site] = true
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("facts the merge refused", "err", err)
	}
	for _, site := range slices.Sorted(maps.Keys(changes)) {
		if err := s.opts.Downlink.Append(b, site, changes[site]); err != nil {
			return err
		}
	}
	return nil
}

// maxViewBytes is the largest encoded view sent down: a message of one
// change, its envelope and signature must stay under event.MaxMessage
// (several hundred thousand residents on one activity's lists). A var so
// that a test can lower it.
var maxViewBytes = event.MaxMessage - 64<<10

// changesFor builds the downlink changes of one entity. Callers hold mu.
func (s *State) changesFor(r merge.Ref) []wire.Change {
	entity := map[string]string{merge.RefReport: wire.EntityReport, merge.RefActivity: wire.EntityActivity,
		merge.RefNotice: wire.EntityNotice, merge.RefAlarm: wire.EntityAlarm, merge.RefAccess: wire.EntityAccessList}[r.Kind]
	if entity == "" {
		return nil
	}
	v, ok := s.merged.View(r)
	c := wire.Change{Entity: entity, ID: r.ID, Deleted: !ok}
	if entity == wire.EntityAccessList {
		c.Role = wire.RoleGateway // its key inverts the card hashes: gateways only
	}
	if ok {
		body, err := event.Marshal(v)
		if err != nil {
			s.log.Error("encode view", "ref", r, "err", err)
			return nil
		}
		if len(body) > maxViewBytes {
			// A downlink message holds at least one whole change, and an
			// edge refuses a message over event.MaxMessage: sent, this
			// view would stop the site's whole downlink there. Edges keep
			// the entity's last view instead.
			s.log.Error("view too large to send down; edges keep its last version", "ref", r, "bytes", len(body), "max", maxViewBytes)
			return nil
		}
		c.Body = body
	}
	// An alarm goes down as itself (kinds and places, no sentences) to every
	// edge of its site: kiosks word it in the resident's language, and every
	// building's residents see it (公共安全互助).
	return []wire.Change{c}
}

// Committed publishes what the commit changed and, once no group of
// ingest's is in flight, runs the seat policy for the sites whose
// activities moved (its decisions are commits of their own, which must
// not come between a group folded in and its commit).
func (s *State) Committed() {
	s.opts.Downlink.Commit()
	if !s.leave() {
		return
	}
	defer s.writeMu.Unlock()
	s.mu.Lock()
	sites := slices.Sorted(maps.Keys(s.pendingSites))
	s.pendingSites = nil
	s.mu.Unlock()
	s.decide(sites)
}

// Aborted undoes an Apply whose commit failed by rebuilding the state from
// what is on disk. Every group applied after it is aborted too (ingest
// fails a group built on a failed one), so the rebuild after the last of
// them holds none of their facts.
func (s *State) Aborted() {
	s.opts.Downlink.Abort()
	s.mu.Lock()
	s.pendingSites = nil
	s.mu.Unlock()
	if err := s.load(); err != nil {
		s.log.Error("reload merged state after a failed commit", "err", err)
	}
	if s.leave() {
		s.writeMu.Unlock()
	}
}

// leave ends one group in flight; true when it was the last (the caller
// then lets writeMu go).
func (s *State) leave() bool {
	s.pipeMu.Lock()
	defer s.pipeMu.Unlock()
	s.inflight--
	return s.inflight == 0
}

// decideWait is the longest the seat policy waits for ingest's pipeline
// to drain while groups keep arriving.
const decideWait = 100 * time.Millisecond

// Overlap reports whether ingest may fold its next group in while the
// one before commits: not while another writer waits for the write lock
// or a seat decision has waited decideWait.
func (s *State) Overlap() bool {
	if s.writers.Load() > 0 {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.pendingSites) == 0 || time.Since(s.decideDue) < decideWait
}

// lockWrite takes writeMu for a writer other than ingest's pipeline.
func (s *State) lockWrite() {
	s.writers.Add(1)
	s.writeMu.Lock()
	s.writers.Add(-1)
}

// Run runs the seat policy for every site periodically until ctx ends,
// and writes the snapshot every SnapshotEvery and once more at the end.
func (s *State) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.DecideEvery)
	defer t.Stop()
	var snap <-chan time.Time
	if s.opts.SnapshotEvery > 0 {
		st := time.NewTicker(s.opts.SnapshotEvery)
		defer st.Stop()
		snap = st.C
		defer s.snapshot()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-snap:
			s.snapshot()
			continue
		case <-t.C:
		}
		s.mu.RLock()
		sites := slices.Sorted(maps.Keys(s.sites))
		s.mu.RUnlock()
		s.lockWrite()
		s.decide(sites)
		s.writeMu.Unlock()
	}
}

// snapshot writes the snapshot, logging a failure: the next start then
// reads an older one, or every fact.
func (s *State) snapshot() {
	start := time.Now()
	if err := s.Snapshot(); err != nil {
		s.log.Error("merged state snapshot", "err", err)
		return
	}
	s.log.Debug("merged state snapshot written", "took", time.Since(start).Round(time.Millisecond))
}

// decide runs the policy until it has nothing more to decide (bounded), and
// records each round's decisions. Callers hold writeMu.
func (s *State) decide(sites []string) {
	for _, site := range sites {
		if !s.owns(site) {
			continue // its owner decides
		}
		for round := 0; round < 8; round++ {
			s.mu.RLock()
			bodies := s.merged.Decide(site, s.opts.Kiosks(site), s.opts.Clock.Now())
			s.mu.RUnlock()
			if len(bodies) == 0 {
				break
			}
			if _, err := s.record(bodies); err != nil {
				s.log.Error("record seat decisions", "site", site, "err", err)
				return
			}
		}
	}
}

// record stores hub decisions as facts, folds them in and commits, then
// publishes. Callers hold writeMu.
func (s *State) record(bodies []event.Body) ([]event.Event, error) {
	b := s.opts.Store.NewBatch()
	s.mu.Lock()
	seq := s.hubSeq
	s.mu.Unlock()
	var facts []merge.Fact
	var evs []event.Event
	for _, body := range bodies {
		seq++
		ev, err := event.NewEvent(s.opts.HubID, seq, s.opts.Clock.Now(), body)
		if err != nil {
			b.Discard()
			return nil, err
		}
		site := s.siteOf(body)
		if err := s.putFact(b, site, &ev); err != nil {
			b.Discard()
			return nil, err
		}
		facts = append(facts, merge.Fact{Site: site, Event: ev})
		evs = append(evs, ev)
	}
	b.Set(s.hubSeqKey(), kv.U64(seq))
	if err := s.fold(b, facts); err != nil {
		b.Discard()
		s.opts.Downlink.Abort()
		if errors.Is(err, merge.ErrArchive) {
			// The fold changed memory that will not be committed.
			if lerr := s.load(); lerr != nil {
				s.log.Error("reload merged state after a failed fold", "err", lerr)
			}
		}
		return nil, err
	}
	if err := b.Commit(); err != nil {
		s.opts.Downlink.Abort()
		if lerr := s.load(); lerr != nil {
			s.log.Error("reload merged state after a failed commit", "err", lerr)
		}
		return nil, err
	}
	s.mu.Lock()
	s.hubSeq = seq
	s.pendingSites = nil
	s.mu.Unlock()
	s.opts.Downlink.Commit()
	return evs, nil
}

// siteOf is the site a hub decision belongs to, for its fact key (every
// hub key starts with its site).
func (s *State) siteOf(b event.Body) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.merged.DecisionSite(b)
}

// Record stores operator decisions (activities, notices, report patches,
// alarm acks), folds them in, commits, publishes them down, and runs the
// seat policy.
func (s *State) Record(bodies ...event.Body) ([]event.Event, error) {
	for _, b := range bodies {
		if err := b.Validate(); err != nil {
			return nil, err
		}
	}
	for _, b := range bodies {
		if site := s.siteOf(b); site != "" && !s.owns(site) {
			return nil, &NotOwnedError{Site: site}
		}
	}
	s.lockWrite()
	defer s.writeMu.Unlock()
	evs, err := s.record(bodies)
	if err != nil {
		return nil, err
	}
	var sites []string
	for _, b := range bodies {
		if a, ok := b.(*event.ActivitySet); ok {
			sites = append(sites, a.Site)
		}
	}
	s.decide(sites)
	return evs, nil
}

// SendDown puts changes that are no part of the merged state (the site CA
// a rotation brings) in site's downlink log and sends them to its edges:
// edges that are away take them when they catch up, like any change.
func (s *State) SendDown(site string, changes []wire.Change) error {
	if !s.owns(site) {
		return &NotOwnedError{Site: site}
	}
	s.lockWrite()
	defer s.writeMu.Unlock()
	b := s.opts.Store.NewBatch()
	if err := s.opts.Downlink.Append(b, site, changes); err != nil {
		b.Discard()
		s.opts.Downlink.Abort()
		return err
	}
	if err := b.Commit(); err != nil {
		s.opts.Downlink.Abort()
		return fmt.Errorf("store downlink changes of %s: %w", site, err)
	}
	s.opts.Downlink.Commit()
	return nil
}

// Read runs f with the merged state under a read lock; f must not keep
// references into it.
func (s *State) Read(f func(m *merge.State)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f(s.merged)
}
