// Package replica mirrors on an edge what the hub sends down — notices,
// activities with this kiosk's share of seats, report statuses, alarms,
// access lists — so the edge shows the last synced state while offline.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/wire"
)

// Key layout inside the edge's store (shared with the outbox):
//
//	r/cursor                 last applied change seq of the site log
//	r/e/{entity}/{id}        the newest wire.Change of the entity; for a
//	                         large one with long lists, a split (split.go:
//	                         its lists in chunks under r/c/); for another
//	                         large one a CBOR array [seq, parts] naming
//	                         where its encoding is kept:
//	r/p/{seq:8}/{part:4}     consecutive pieces of a large change
const (
	keyCursor    = "r/cursor"
	prefixEntity = "r/e/"
	prefixPart   = "r/p/"
)

// partSize bounds every value the replica writes. A change larger than
// this (an access list or a busy activity's view can be megabytes) is
// kept in pieces, written before the transaction that applies the
// message: one Badger transaction holds only 15 % of a memtable (614 KiB
// with the small profile), with every other change of the message. It is
// kv.PieceSize, the bound every large value on the edge is kept in.
const partSize = kv.PieceSize

func partKey(seq uint64, part uint32) []byte {
	return kv.Key(prefixPart, kv.U64(seq), []byte{byte(part >> 24), byte(part >> 16), byte(part >> 8), byte(part)})
}

// pointer is what an entity key holds for a change kept in pieces.
type pointer struct {
	_     struct{} `cbor:",toarray"`
	Seq   uint64
	Parts uint32
}

// Replica is the edge's mirror of hub state.
type Replica struct {
	db     *badger.DB
	site   string
	device string
	role   string // for changes meant for one role only (wire.Change.Role)
	log    *slog.Logger

	now func() time.Time // time.Now; a test's clock

	mu       sync.Mutex
	cursor   uint64
	gen      uint64 // the last gen of split chunks given out (split.go); the apply goroutine's
	lastAsk  time.Time
	hooks    []func(txn *badger.Txn, c wire.Change) error
	after    []func([]wire.Change)
	in       chan []byte
	acks     chan wire.DownAck
	applied  uint64
	catchUps uint64
	refused  uint64
	verify   func(payload []byte) (data []byte, verified bool, err error)

	received      *prometheus.CounterVec // changes received, by kind and form
	receivedBytes *prometheus.CounterVec
	applyTime     prometheus.Histogram
	deltaMisses   prometheus.Counter
}

// Collectors are the replica's metrics, to register with the edge's
// registry.
func (r *Replica) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.received, r.receivedBytes, r.applyTime, r.deltaMisses}
}

// SetVerifier installs the check of the hub's signature. verify returns
// the signed payload and whether it was verified (false only for an edge
// that has no hub key yet); an error refuses the message.
func (r *Replica) SetVerifier(verify func(payload []byte) ([]byte, bool, error)) {
	r.mu.Lock()
	r.verify = verify
	r.mu.Unlock()
}

// SetRole says this edge's role; changes for another role are skipped.
// Call it before Run.
func (r *Replica) SetRole(role string) {
	r.mu.Lock()
	r.role = role
	r.mu.Unlock()
}

// Open loads the cursor from db.
func Open(db *badger.DB, site, device string, log *slog.Logger) (*Replica, error) {
	r := &Replica{db: db, site: site, device: device, log: log, now: time.Now,
		in: make(chan []byte, 64), acks: make(chan wire.DownAck, 1),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "linli_edge_downlink_messages_total",
			Help: "Downlink changes received from the hub, by entity kind and form (delta, snapshot, deleted, withheld)."},
			[]string{"kind", "form"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "linli_edge_downlink_bytes_total",
			Help: "Payload bytes (entity body or delta) of the downlink changes received, by entity kind and form."},
			[]string{"kind", "form"}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "linli_edge_downlink_apply_seconds",
			Help:    "Time to verify, decode and apply one downlink message.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		deltaMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "linli_edge_downlink_delta_misses_total",
			Help: "Deltas not applied because this edge held another version of the entity (it caught up instead)."})}
	err := db.View(func(txn *badger.Txn) error {
		var err error
		if r.cursor, err = kv.GetU64(txn, []byte(keyCursor)); err != nil {
			return err
		}
		r.gen, err = kv.GetU64(txn, []byte(keyGen))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read replica cursor: %w", err)
	}
	if err := r.dropUnappliedParts(); err != nil {
		return nil, err
	}
	return r, nil
}

// dropUnappliedParts deletes the pieces of large changes whose message
// never got applied (the edge stopped between writing them and applying
// it): their seqs are above the cursor.
func (r *Replica) dropUnappliedParts() error {
	var keys [][]byte
	err := r.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixPart)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(partKey(r.cursor+1, 0)); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		// Chunks of a split whose transaction never committed: their gen
		// is above the last one stored.
		opts.Prefix = []byte(prefixChunk)
		ct := txn.NewIterator(opts)
		defer ct.Close()
		for ct.Seek(chunkKey(r.gen+1, 0)); ct.Valid(); ct.Next() {
			keys = append(keys, ct.Item().KeyCopy(nil))
		}
		return nil
	})
	if err == nil {
		err = kv.DeleteKeys(r.db, keys)
	}
	if err != nil {
		return fmt.Errorf("drop pieces of unapplied changes: %w", err)
	}
	return nil
}

// OnApply registers f to run inside the transaction that applies each
// change (e.g. to keep a derived index); an error fails the whole message,
// which is then retried on the next catch-up. A change applied as a delta
// to an entity kept split (split.go) comes with its Delta and no Body: f
// reads what it needs in txn (HeadTxn, SearchTxn, GetTxn), which holds the
// new version.
func (r *Replica) OnApply(f func(txn *badger.Txn, c wire.Change) error) {
	r.mu.Lock()
	r.hooks = append(r.hooks, f)
	r.mu.Unlock()
}

// AfterApply registers f to run after changes are durable (e.g. to give
// back recalled seats). f runs on the replica's goroutine. As for OnApply,
// a delta applied to an entity kept split comes without its Body (Get
// reads it whole).
func (r *Replica) AfterApply(f func([]wire.Change)) {
	r.mu.Lock()
	r.after = append(r.after, f)
	r.mu.Unlock()
}

// Cursor is the last change applied.
func (r *Replica) Cursor() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursor
}

// Handle queues a message from the hub; it never blocks (the MQTT client
// calls it). A message dropped because the queue is full is fetched again
// by the next catch-up.
func (r *Replica) Handle(topic string, payload []byte) {
	r.log.Debug("downlink message", "topic", topic, "bytes", len(payload))
	select {
	case r.in <- payload:
	default:
		r.log.Warn("downlink queue full; will catch up", "topic", topic)
	}
}

// Acks delivers the cursor reports the uplink sends to the hub.
func (r *Replica) Acks() <-chan wire.DownAck { return r.acks }

// Head tells the replica the head of the hub's log (from an ack); if the
// replica is behind, it asks for a catch-up, at most every few seconds.
func (r *Replica) Head(head uint64) {
	r.mu.Lock()
	now := r.now()
	behind := head != r.cursor && now.Sub(r.lastAsk) > 3*time.Second
	if behind {
		r.lastAsk = now
	}
	cur := r.cursor
	r.mu.Unlock()
	if behind {
		r.ack(wire.DownAck{Cursor: cur, CatchUp: true})
	}
}

func (r *Replica) ack(a wire.DownAck) {
	for { // keep only the newest report
		select {
		case r.acks <- a:
			return
		default:
		}
		select {
		case <-r.acks:
		default:
		}
	}
}

// Run applies queued messages until ctx ends.
func (r *Replica) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case payload := <-r.in:
			start := time.Now()
			r.mu.Lock()
			verify := r.verify
			r.mu.Unlock()
			verified := true
			if verify != nil {
				var err error
				if payload, verified, err = verify(payload); err != nil {
					r.mu.Lock()
					r.refused++
					r.mu.Unlock()
					r.log.Warn("downlink message refused", "err", err)
					continue
				}
			}
			d, err := wire.DecodeDown(payload)
			if err != nil {
				r.log.Warn("bad downlink message", "err", err)
				continue
			}
			r.log.Debug("downlink apply", "prev", d.Prev, "last", d.Last, "changes", len(d.Changes), "snapshot", d.Snapshot, "cursor", r.Cursor())
			r.count(&d)
			if err := r.apply(d, verified); err != nil {
				r.log.Error("apply downlink", "err", err)
			}
			r.applyTime.Observe(time.Since(start).Seconds())
		}
	}
}

// count adds a message's changes to the metrics.
func (r *Replica) count(d *wire.Down) {
	for i := range d.Changes {
		c := &d.Changes[i]
		size := len(c.Body)
		if c.Delta != nil {
			if enc, err := event.Marshal(c.Delta); err == nil {
				size = len(enc)
			}
		}
		r.received.WithLabelValues(c.Entity, c.Form()).Inc()
		r.receivedBytes.WithLabelValues(c.Entity, c.Form()).Add(float64(size))
	}
}

// askCatchUp asks the hub for a catch-up from cur, at most every askAgain.
func (r *Replica) askCatchUp(cur uint64) {
	now := r.now()
	r.mu.Lock()
	ask := now.Sub(r.lastAsk) >= askAgain
	if ask {
		r.catchUps++
		r.lastAsk = now
	}
	r.mu.Unlock()
	if ask {
		r.ack(wire.DownAck{Cursor: cur, CatchUp: true})
	}
}

// askAgain is the least time between two catch-up requests of a message
// that does not follow the cursor.
const askAgain = time.Second

// ErrOtherSite is returned for a message of another site.
var ErrOtherSite = errors.New("downlink message for another site")

// Apply applies a verified Down message in one transaction and reports the
// new cursor to the hub. A message that does not follow the cursor asks for
// a catch-up instead; a message already applied changes nothing.
func (r *Replica) Apply(d wire.Down) error { return r.apply(d, true) }

// patch checks delta change c against the version this edge holds: the
// newest change of the entity taken earlier in this message (changes,
// taken), else the stored one. ok is false when that version is not the
// one c.Base and c.BaseHLC name (or the delta does not fit it). When the
// entity is kept split (split.go), split is true and the delta is applied
// inside the transaction; otherwise full is the whole change.
func (r *Replica) patch(changes []wire.Change, inTxn []bool, taken map[string]int, c wire.Change) (full wire.Change, split, ok bool, err error) {
	var held wire.Change
	found := false
	if j, in := taken[c.Entity+"/"+c.ID]; in {
		held, found, split = changes[j], true, inTxn[j]
	} else {
		err = r.db.View(func(txn *badger.Txn) error {
			s, ok, err := loadStored(txn, entityKey(c.Entity, c.ID))
			switch {
			case err != nil || !ok:
				return err
			case s.split != nil:
				held, found, split = s.split.Change, true, true
			case s.whole != nil:
				held, found = *s.whole, true
			default: // in pieces, as stored before splits
				held, found, err = GetTxn(txn, c.Entity, c.ID)
			}
			return err
		})
		if err != nil {
			return wire.Change{}, false, false, err
		}
	}
	if !found || held.Deleted || held.Seq != c.Base || held.HLC != c.BaseHLC {
		return wire.Change{}, false, false, nil
	}
	if split {
		return c, true, true, nil
	}
	body, err := wire.Patch(held.Body, c.Delta)
	if err != nil {
		r.log.Warn("delta does not fit the version held; catching up", "entity", c.Entity, "id", c.ID, "err", err)
		return wire.Change{}, false, false, nil
	}
	c.Body, c.Base, c.BaseHLC, c.Delta = body, 0, 0, nil
	return c, false, true, nil
}

// mine reports whether a change is for this edge: for the whole site, for
// this device, or for this edge's role.
func (r *Replica) mine(c wire.Change) bool {
	r.mu.Lock()
	role := r.role
	r.mu.Unlock()
	return (c.Device == "" || c.Device == r.device) && (c.Role == "" || c.Role == role)
}

func entityKey(entity, id string) []byte { return []byte(prefixEntity + entity + "/" + id) }

// Get returns the newest change of one entity.
func (r *Replica) Get(entity, id string) (wire.Change, bool, error) {
	var c wire.Change
	found := false
	err := r.db.View(func(txn *badger.Txn) error {
		var err error
		c, found, err = GetTxn(txn, entity, id)
		return err
	})
	return c, found, err
}

// GetTxn is Get inside a caller's transaction (an outbox Builder).
func GetTxn(txn *badger.Txn, entity, id string) (wire.Change, bool, error) {
	item, err := txn.Get(entityKey(entity, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return wire.Change{}, false, nil
	}
	if err != nil {
		return wire.Change{}, false, err
	}
	c, err := decodeItem(txn, item)
	return c, err == nil, err
}

// Head is an entity's newest change as stored, with, for one kept split
// (split.go), only the fields of its body not kept apart: a reader that
// wants an activity's counts and window, or one resident (Search), does
// not read its thousands of residents.
type Head struct {
	wire.Change
	// Split: the long arrays of Body are kept apart (missing from Body).
	Split bool
	split *split
}

// HeadTxn reads an entity's head. For an entity stored whole it is the
// whole change (GetTxn).
func HeadTxn(txn *badger.Txn, entity, id string) (Head, bool, error) {
	s, found, err := loadStored(txn, entityKey(entity, id))
	switch {
	case err != nil || !found:
		return Head{}, false, err
	case s.split != nil:
		return Head{Change: s.split.Change, Split: true, split: s.split}, true, nil
	case s.whole != nil:
		return Head{Change: *s.whole}, true, nil
	}
	c, found, err := GetTxn(txn, entity, id)
	return Head{Change: c}, found, err
}

// Search tells whether field k of the entity's body, an array sorted so
// that cmp (an entry against the one sought: <0 before it, 0 it, >0 after
// it) finds entries by halving, holds the entry sought; false for a
// missing field. For an entity kept split it reads one chunk.
func (h Head) Search(txn *badger.Txn, k int, cmp func(entry []byte) int) (bool, error) {
	if h.split != nil {
		return h.split.search(txn, k, cmp)
	}
	return searchBody(h.Body, k, cmp)
}

// SearchTxn is HeadTxn and Search; false for a missing entity.
func SearchTxn(txn *badger.Txn, entity, id string, k int, cmp func(entry []byte) int) (bool, error) {
	h, found, err := HeadTxn(txn, entity, id)
	if err != nil || !found {
		return false, err
	}
	return h.Search(txn, k, cmp)
}

// decodeItem reads the change stored at an entity key, putting a large
// one's pieces, or a split's chunks, back together.
func decodeItem(txn *badger.Txn, item *badger.Item) (wire.Change, error) {
	var st stored
	err := item.Value(func(v []byte) error {
		var err error
		st, err = storedForm(v)
		return err
	})
	switch {
	case err != nil:
		return wire.Change{}, fmt.Errorf("change %s: %w", item.Key(), err)
	case st.whole != nil:
		return *st.whole, nil
	case st.split != nil:
		return st.split.whole(txn)
	}
	var c wire.Change
	p := st.ptr
	var whole []byte
	for i := range p.Parts {
		part, err := txn.Get(partKey(p.Seq, i))
		if err != nil {
			return c, fmt.Errorf("change %s: piece %d of %d: %w", item.Key(), i+1, p.Parts, err)
		}
		if err := part.Value(func(v []byte) error { whole = append(whole, v...); return nil }); err != nil {
			return c, err
		}
	}
	return c, event.UnmarshalOwn(whole, &c)
}

// drop deletes what the stored form keeps under other keys (a large
// change's pieces, a split's chunks), inside the transaction that
// replaces or deletes it.
func (s stored) drop(txn *badger.Txn) error {
	switch {
	case s.split != nil:
		return s.split.dropChunks(txn)
	case s.ptr != nil:
		for i := range s.ptr.Parts {
			if err := txn.Delete(partKey(s.ptr.Seq, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// List returns every entity of a kind.
func (r *Replica) List(entity string) ([]wire.Change, error) {
	var out []wire.Change
	err := r.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixEntity + entity + "/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			c, err := decodeItem(txn, it.Item())
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// Stats counts applied changes, catch-up requests and messages refused for
// their signature.
func (r *Replica) Stats() (cursor, applied, catchUps, refused uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursor, r.applied, r.catchUps, r.refused
}
