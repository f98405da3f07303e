// Package downlink keeps each site's change log on the hub — the newest
// snapshot of every entity edges mirror (notices, activities, reports,
// alarms, access lists) — publishes new changes to the site's edges and
// answers their catch-up requests.
package downlink

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"linli/hub/store"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/wire"
)

// Key layout: l/{site}/{seq:8} → wire.Change. Only the newest change of
// each entity is kept (the log is compacted as it grows), so a catch-up
// from any cursor is bounded by the number of entities, not of changes.
//
// Beside it, in the same commits: lx/{site}/{entity}/{id}/{device} → the
// seq of the entity's newest change (seq:8), which Append reads to delete
// the change a new one supersedes, and lh/{site} → the site's head. The
// log holds a change of every entity a site ever had (every report, years
// of them); the hub kept that index in memory and read the whole log at
// every start to build it, so its memory and start grew with history.
// Stores written before the index existed get it built once, at Open
// (keyIndexed marks it done).
const (
	prefix      = "l/"
	prefixIndex = "lx/"
	prefixHead  = "lh/"
	keyIndexed  = "lm/indexed"
)

// Publisher sends messages to edges.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// Limits of one Down message.
const (
	maxChanges = 500
	maxBytes   = 512 << 10
)

// Devices knows the enrolled devices of each site and their roles, for
// changes that only devices of one role may have (wire.Change.Role).
type Devices interface {
	// Role is the role of an enrolled, unrevoked device of site, or "".
	Role(site, device string) string
	// OfRole lists the enrolled, unrevoked devices of site with role.
	OfRole(site, role string) []string
}

// Log is the hub's downlink. Append and Commit/Abort are called by the
// single committer; CatchUp and Head from anywhere.
type Log struct {
	db      store.Backend
	pub     Publisher
	clock   *hlc.Clock
	log     *slog.Logger
	sign    func([]byte) ([]byte, error)
	devices Devices // nil: restricted changes reach nobody

	mu    sync.Mutex
	heads map[string]uint64 // site → last seq

	// staged are the commits appended to and not yet committed, oldest
	// first: ingest folds its next group in while one commits, and each
	// continues the site's sequence of the one before.
	staged []*staged
	// recent are the bodies of committed changes, the bases of the
	// next deltas; bounded by recentMax bytes.
	recent recentBodies

	sent      *prometheus.CounterVec // changes sent by kind and form
	sentBytes *prometheus.CounterVec // their payload bytes
}

type staged struct {
	batch store.Batch           // the commit these changes go in
	downs map[string]*wire.Down // site → what the pending commit adds
	heads map[string]uint64
	// index: site → entity → the seq of its newest change in this
	// commit, which the commits staged after it read before the store's
	// index (this one's batch is not in the store until it commits).
	index map[string]map[string]uint64
	// bases: site → entity → the version edges hold before this commit,
	// which a live change's delta is made from.
	bases map[string]map[string]base
	// last: site → entity → its newest change in this commit, the base of
	// the commits after it.
	last map[string]map[string]base
}

// base is an entity's version as the last commit left it.
type base struct {
	seq  uint64
	hlc  hlc.Timestamp
	body []byte // nil: none, deleted, or withheld from the log
}

// minDeltaBody is the least body worth diffing: a smaller entity goes
// whole, which costs less than the diff.
const minDeltaBody = 256

// Open loads each site's head from db (building the stored entity index
// first if db predates it). sign, when set, signs every message (edges
// verify it with the hub's key).
func Open(db store.Backend, pub Publisher, clock *hlc.Clock, sign func([]byte) ([]byte, error), log *slog.Logger) (*Log, error) {
	l := &Log{db: db, pub: pub, clock: clock, log: log, sign: sign,
		heads: map[string]uint64{},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "linli_hub_downlink_messages_total",
			Help: "Downlink changes the hub sent to edges, by entity kind and form (delta, snapshot, deleted, withheld); catch-ups send snapshots."},
			[]string{"kind", "form"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "linli_hub_downlink_bytes_total",
			Help: "Payload bytes (entity body or delta) of the downlink changes the hub sent, by entity kind and form."},
			[]string{"kind", "form"})}
	indexed := true
	err := db.View(func(v store.View) error {
		if _, _, err := v.Get([]byte(keyIndexed)); errors.Is(err, store.ErrNotFound) {
			indexed = false
			return nil
		} else if err != nil {
			return err
		}
		return v.Scan([]byte(prefixHead), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			l.heads[string(key[len(prefixHead):])] = kv.ParseU64(val)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load downlink heads: %w", err)
	}
	if !indexed {
		if err := l.buildIndex(); err != nil {
			return nil, fmt.Errorf("build downlink index: %w", err)
		}
	}
	return l, nil
}

// buildIndex writes the entity index and the heads of a store whose log
// predates them, from the log (read once, whole), and marks it done. An
// entry another hub wrote meanwhile (a district's worker already on this
// binary) is newer than the log this read, and is kept.
func (l *Log) buildIndex() error {
	heads := map[string]uint64{}
	type entry struct {
		key []byte
		seq uint64
	}
	var entries []entry
	err := l.db.View(func(v store.View) error {
		return v.Scan([]byte(prefix), nil, 0, func(key, val []byte, _ uint64) (bool, error) {
			var c changeHead
			if err := event.UnmarshalOwn(val, &c); err != nil {
				return false, fmt.Errorf("change %q: %w", key, err)
			}
			site := siteOf(key)
			heads[site] = max(heads[site], c.Seq)
			entries = append(entries, entry{indexKey(site, entityKey(c.Entity, c.ID, c.Device)), c.Seq})
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	const perBatch = 1000
	for len(entries) > 0 {
		n := min(perBatch, len(entries))
		b := l.db.NewBatch()
		for _, e := range entries[:n] {
			if err := setIfNewer(b, e.key, e.seq); err != nil {
				b.Discard()
				return err
			}
		}
		if err := b.Commit(); err != nil {
			return err
		}
		entries = entries[n:]
	}
	b := l.db.NewBatch()
	for site, head := range heads {
		if err := setIfNewer(b, headKey(site), head); err != nil {
			b.Discard()
			return err
		}
	}
	b.Set([]byte(keyIndexed), []byte{1})
	if err := b.Commit(); err != nil {
		return err
	}
	for site, head := range heads {
		l.heads[site] = max(l.heads[site], head)
	}
	l.log.Info("downlink index built from the log", "sites", len(heads))
	return nil
}

// setIfNewer sets key to seq in b unless it holds a larger one.
func setIfNewer(b store.Batch, key []byte, seq uint64) error {
	cur, err := b.Get(key)
	if err != nil {
		return err
	}
	if cur == nil || kv.ParseU64(cur) < seq {
		b.Set(key, kv.U64(seq))
	}
	return nil
}

// Collectors are the downlink's metrics, to register with the hub's
// registry.
func (l *Log) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.sent, l.sentBytes}
}

// SetDevices says which devices may have restricted changes; call it
// before the first Commit or CatchUp.
func (l *Log) SetDevices(d Devices) { l.devices = d }

// changeHead is what building the index needs of a stored change: the
// log holds the latest change of every report and activity a site ever
// had, and their bodies are years of views.
type changeHead struct {
	Seq    uint64 `cbor:"1,keyasint"`
	Entity string `cbor:"2,keyasint"`
	ID     string `cbor:"3,keyasint"`
	Device string `cbor:"4,keyasint,omitempty"`
}

func siteOf(key []byte) string {
	rest := key[len(prefix):]
	return string(rest[:len(rest)-9]) // "/" + 8-byte seq
}

func changeKey(site string, seq uint64) []byte {
	return kv.Key(prefix, []byte(site+"/"), kv.U64(seq))
}

func entityKey(entity, id, device string) string { return entity + "/" + id + "/" + device }

func indexKey(site, entityKey string) []byte {
	return kv.Key(prefixIndex, []byte(site+"/"+entityKey))
}

func headKey(site string) []byte { return kv.Key(prefixHead, []byte(site)) }

// priorIndex is, for each entity of changes that st does not hold yet,
// the seq of its newest change before this commit (0: none, left out):
// from the commits staged earlier, newest first, else from the store's
// index as of b, read for all of them in one call (one read per entity
// was a round trip each on PostgreSQL, most of a catch-up's time).
func (l *Log) priorIndex(b store.Batch, st *staged, earlier []*staged, site string, changes []wire.Change) (map[string]uint64, error) {
	prior := map[string]uint64{}
	var eks []string
	var keys [][]byte
	for _, c := range changes {
		ek := entityKey(c.Entity, c.ID, c.Device)
		if _, ok := st.index[site][ek]; ok {
			continue
		}
		if _, ok := prior[ek]; ok {
			continue
		}
		prior[ek] = 0
		found := false
		for i := len(earlier) - 1; !found && i >= 0; i-- {
			if seq, ok := earlier[i].index[site][ek]; ok {
				prior[ek], found = seq, true
			}
		}
		if !found {
			eks, keys = append(eks, ek), append(keys, indexKey(site, ek))
		}
	}
	if len(keys) == 0 {
		return prior, nil
	}
	vals, err := b.GetMany(keys)
	if err != nil {
		return nil, fmt.Errorf("read downlink index: %w", err)
	}
	for i, ek := range eks {
		prior[ek] = kv.ParseU64(vals[i])
	}
	return prior, nil
}

// Head is the last seq of a site's log.
func (l *Log) Head(site string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.heads[site]
}

// Append adds changes for site to the pending commit b: each gets the next
// seq, and the change it supersedes is deleted. Call Commit after b is
// durable or Abort if it failed. Changes for a batch other than the last
// one appended to start a new commit, which follows the ones staged.
func (l *Log) Append(b store.Batch, site string, changes []wire.Change) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st *staged
	if n := len(l.staged); n > 0 && l.staged[n-1].batch == b {
		st = l.staged[n-1]
	} else {
		st = &staged{batch: b, downs: map[string]*wire.Down{}, heads: map[string]uint64{}, index: map[string]map[string]uint64{},
			bases: map[string]map[string]base{}, last: map[string]map[string]base{}}
		l.staged = append(l.staged, st)
	}
	earlier := l.staged[:len(l.staged)-1] // staged before st, oldest first
	head, ok := st.heads[site]
	if !ok {
		head = l.heads[site]
		for _, e := range earlier {
			if h, ok := e.heads[site]; ok {
				head = h
			}
		}
	}
	d := st.downs[site]
	if d == nil {
		d = &wire.Down{Site: site, Prev: head, Last: head}
		st.downs[site] = d
	}
	if st.bases[site] == nil {
		st.bases[site] = map[string]base{}
		st.last[site] = map[string]base{}
		st.index[site] = map[string]uint64{}
	}
	prior, err := l.priorIndex(b, st, earlier, site, changes)
	if err != nil {
		return err
	}
	for _, c := range changes {
		head++
		c.Seq = head
		if c.HLC == 0 {
			c.HLC = l.clock.Now()
		}
		val, err := event.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode change: %w", err)
		}
		ek := entityKey(c.Entity, c.ID, c.Device)
		// The newest change of the entity: this commit's, else the one
		// before this commit (a commit staged earlier, whose batch is not
		// in the store yet, or the store's index).
		old, ok := st.index[site][ek]
		if !ok {
			old = prior[ek]
		}
		if old != 0 {
			b.Delete(changeKey(site, old))
			// A change superseded within this same commit is dropped from the
			// message too.
			d.Changes = dropSeq(d.Changes, old)
		}
		bs, ok := st.bases[site][ek]
		if !ok {
			// Edges hold the version the commits before leave (old): the
			// delta of every change of this commit to the entity starts
			// from it.
			bs = l.baseOf(earlier, site, ek, old)
			st.bases[site][ek] = bs
		}
		b.Set(changeKey(site, c.Seq), val)
		b.Set(indexKey(site, ek), kv.U64(c.Seq))
		st.index[site][ek] = c.Seq
		st.last[site][ek] = baseFrom(c)
		d.Changes = append(d.Changes, l.live(c, bs))
	}
	d.Last = head
	st.heads[site] = head
	b.Set(headKey(site), kv.U64(head))
	// The store's queryable tables (PostgreSQL) take the same changes in
	// the same transaction.
	b.Project(site, changes)
	return nil
}

// baseFrom is c as the base of a later delta.
func baseFrom(c wire.Change) base {
	if c.Deleted || len(c.Body) < minDeltaBody {
		return base{seq: c.Seq}
	}
	return base{seq: c.Seq, hlc: c.HLC, body: c.Body}
}

// baseOf is the change seq of site's entity ek (0: none): from a commit
// staged earlier, else from the bodies of recent commits, else read from
// the store. Called with mu held.
func (l *Log) baseOf(earlier []*staged, site, ek string, seq uint64) base {
	if seq == 0 {
		return base{}
	}
	for i := len(earlier) - 1; i >= 0; i-- {
		if bs, ok := earlier[i].last[site][ek]; ok && bs.seq == seq {
			return bs
		}
	}
	if bs, ok := l.recent.get(site, ek); ok && bs.seq == seq {
		return bs
	}
	var c wire.Change
	err := l.db.View(func(v store.View) error {
		val, _, err := v.Get(changeKey(site, seq))
		if err != nil {
			return err
		}
		return event.UnmarshalOwn(val, &c)
	})
	if err != nil {
		l.log.Warn("read change for a delta; sending the entity whole", "site", site, "seq", seq, "err", err)
		return base{seq: seq}
	}
	return baseFrom(c)
}

// live is the form of c sent live: a delta from bs when edges hold bs and
// the delta is smaller than the body, else c itself. The log keeps c
// whole, so a catch-up always sends the entity.
func (l *Log) live(c wire.Change, bs base) wire.Change {
	if bs.body == nil || c.Deleted || len(c.Body) < minDeltaBody {
		return c
	}
	delta, err := wire.Diff(bs.body, c.Body)
	if err != nil {
		return c
	}
	enc, err := event.Marshal(delta)
	if err != nil || len(enc) >= len(c.Body) {
		return c
	}
	c.Base, c.BaseHLC, c.Delta, c.Body = bs.seq, bs.hlc, delta, nil
	return c
}

func dropSeq(cs []wire.Change, seq uint64) []wire.Change {
	for i, c := range cs {
		if c.Seq == seq {
			return append(cs[:i], cs[i+1:]...)
		}
	}
	return cs
}

// Commit makes the oldest staged commit's changes live and publishes
// them to each site's edges.
func (l *Log) Commit() {
	l.mu.Lock()
	if len(l.staged) == 0 {
		l.mu.Unlock()
		return
	}
	st := l.staged[0]
	l.staged = l.staged[1:]
	for site, h := range st.heads {
		l.heads[site] = h
	}
	for site, last := range st.last {
		for ek, bs := range last {
			l.recent.put(site, ek, bs)
		}
	}
	l.mu.Unlock()
	for site, d := range st.downs {
		d.Clock = l.clock.Now()
		l.publishLive(site, d)
	}
}

// publishLive sends a commit's changes of site: on the site's topic with
// every restricted change withheld (no body), and, to each device a
// restricted change is for, the whole message on its own down topic. Both
// cover the same range, so whichever a device applies first, the other
// changes nothing; a device that meets a change withheld from it waits
// for its own copy (or, if that is lost, catches up).
func (l *Log) publishLive(site string, d *wire.Down) {
	shared := *d
	shared.Changes = make([]wire.Change, len(d.Changes))
	roles := map[string]bool{}
	for i, c := range d.Changes {
		if c.Restricted() {
			roles[c.Role] = true
			c.Body, c.Deleted, c.Withheld, c.Base, c.BaseHLC, c.Delta = nil, false, true, 0, 0, nil
		}
		shared.Changes[i] = c
	}
	l.publish(wire.SiteDown(site), &shared)
	if len(roles) == 0 {
		return
	}
	if l.devices == nil {
		l.log.Warn("restricted downlink changes and no device registry: sent to nobody", "site", site)
		return
	}
	for role := range roles {
		for _, dev := range l.devices.OfRole(site, role) {
			own := *d
			own.Changes = nil
			for _, c := range d.Changes {
				if !c.Restricted() || c.Role == role {
					own.Changes = append(own.Changes, c)
				}
			}
			l.publish(wire.Topic(site, dev, wire.LeafDown), &own)
		}
	}
}

// Abort drops the staged changes: the oldest commit failed, and every
// commit staged after it continues its sequence, so none of them may
// commit either.
func (l *Log) Abort() {
	l.mu.Lock()
	l.staged = nil
	l.mu.Unlock()
}

func (l *Log) publish(topic string, d *wire.Down) {
	for _, part := range split(d) {
		payload, err := wire.Encode(part)
		if err == nil && l.sign != nil {
			payload, err = l.sign(payload)
		}
		if err != nil {
			l.log.Error("encode down", "err", err)
			return
		}
		if err := l.pub.Publish(topic, payload, false); err != nil {
			l.log.Warn("publish down", "topic", topic, "err", err)
			return
		}
		l.count(part)
	}
}

// count adds a message's changes to the metrics.
func (l *Log) count(d *wire.Down) {
	for i := range d.Changes {
		c := &d.Changes[i]
		kind, form := c.Entity, c.Form()
		l.sent.WithLabelValues(kind, form).Inc()
		l.sentBytes.WithLabelValues(kind, form).Add(float64(PayloadSize(c)))
	}
}

// PayloadSize is the encoded size of what c carries of its entity: the
// body, or the delta.
func PayloadSize(c *wire.Change) int {
	if c.Delta != nil {
		enc, err := event.Marshal(c.Delta)
		if err != nil {
			return 0
		}
		return len(enc)
	}
	return len(c.Body)
}

// split cuts a Down into messages of bounded size, each continuing the
// previous one.
func split(d *wire.Down) []*wire.Down {
	var out []*wire.Down
	cur := &wire.Down{Site: d.Site, Prev: d.Prev, Clock: d.Clock, Snapshot: d.Snapshot}
	size := 0
	for _, c := range d.Changes {
		if len(cur.Changes) > 0 && (len(cur.Changes) >= maxChanges || size+len(c.Body) > maxBytes) {
			cur.Last = cur.Changes[len(cur.Changes)-1].Seq
			out = append(out, cur)
			cur = &wire.Down{Site: d.Site, Prev: cur.Last, Clock: d.Clock}
			size = 0
		}
		cur.Changes = append(cur.Changes, c)
		size += len(c.Body) + 64
	}
	cur.Last = d.Last
	return append(out, cur)
}

// CatchUp sends device everything of its site's log after cursor on the
// device's own down topic. A cursor ahead of the log (the hub was restored
// or wiped) gets a snapshot from the start.
func (l *Log) CatchUp(site, device string, cursor uint64) error {
	head := l.Head(site)
	if cursor == head {
		return nil
	}
	d := &wire.Down{Site: site, Prev: cursor}
	if cursor > head {
		d.Prev, d.Snapshot = 0, true
	}
	role := ""
	if l.devices != nil {
		role = l.devices.Role(site, device)
	}
	err := l.db.View(func(v store.View) error {
		return v.Scan(kv.Key(prefix, []byte(site+"/")), changeKey(site, d.Prev+1), 0, func(key, val []byte, _ uint64) (bool, error) {
			var c wire.Change
			if err := event.UnmarshalOwn(val, &c); err != nil {
				return false, fmt.Errorf("change %q: %w", key, err)
			}
			if c.Seq > head {
				return false, nil // committed after we read the head; the live message carries it
			}
			if (c.Device == "" || c.Device == device) && (c.Role == "" || c.Role == role) {
				d.Changes = append(d.Changes, c)
			}
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("read downlink log: %w", err)
	}
	d.Last = head
	d.Clock = l.clock.Now()
	l.publish(wire.Topic(site, device, wire.LeafDown), d)
	return nil
}

// LoadSite reads site's head again from the store: a worker taking a
// site on from another continues the site's sequence where the store has
// it, not where its own copy stopped.
func (l *Log) LoadSite(site string) error {
	var head uint64
	err := l.db.View(func(v store.View) error {
		val, _, err := v.Get(headKey(site))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		head = kv.ParseU64(val)
		return err
	})
	if err != nil {
		return fmt.Errorf("load downlink head of %s: %w", site, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.heads[site] = head
	l.recent.dropSite(site)
	return nil
}
