// Package outbox is the edge's durable, append-only event log in Badger:
// per-device sequence numbers, group-committed synced writes, the hub's ack
// cursor, and retention of acked events.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/journal"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// Key layout. Event keys sort by sequence number.
const (
	prefixEvent = "e/"
	keyLast     = "m/last"   // highest seq ever assigned
	keyAcked    = "m/acked"  // the hub's high-water mark as last told
	keyHLC      = "m/hlc"    // highest HLC issued, the clock's floor after restart
	keyDevice   = "m/device" // the device the log belongs to
	// keyHoles is 1 when seqs above the ack cursor may be missing (dropped
	// telemetry, or a hub that lowered the cursor below deleted events),
	// 0 when every seq in (acked, last] is stored: Open then knows the
	// backlog's size without counting it (40 ms per 200,000 events).
	keyHoles = "m/holes"
)

// Errors of the outbox.
var (
	ErrClosed = errors.New("outbox is closed")
	// ErrDeviceMismatch means the data dir holds another device's log.
	ErrDeviceMismatch = errors.New("data dir belongs to another device")
)

// Options configure a Log.
type Options struct {
	Device string
	// Retention keeps acked events this long before deleting them, so a hub
	// restored from an older backup can still be refilled.
	Retention         time.Duration
	RetentionInterval time.Duration // how often retention runs (default a minute)
	MaxGroup          int           // most events per group commit
	// Linger is how long a group commit may wait for concurrent writers
	// the previous commit just answered (default 500µs; negative: never).
	// On a disk whose fsync is slow the wait grows to half the previous
	// commit's time (at most maxLinger): see commitLoop.
	Linger time.Duration
	Now    func() time.Time
	Logger *slog.Logger
	// Journal is the directory of the outbox's write-ahead journal
	// (edge/journal). With one, a group commit is answered once its one
	// record there is synced, and goes into Badger afterwards by a
	// second loop (see applyLoop); without, it is answered once Badger's
	// synced commit returns, which syncs two logs one after the other.
	// Groups with a Builder always take Badger's synced commit: what a
	// builder writes besides the event is not journaled.
	Journal string
	// JournalAbove is how long Badger's synced commits must take, on
	// average, for groups to go through the journal (default 2ms;
	// negative: always). On a fast disk the journal only adds work: a
	// second write and sync of every event, on a CPU that is then the
	// bound (measured: 20 % fewer writes a second); on a slow one its
	// single sync halves the wait. Below half of it groups go to Badger
	// directly again.
	JournalAbove time.Duration
	// UnsafeNoJournalSync skips the journal's fdatasync. Test-only: the
	// power-cut suite's negative control.
	UnsafeNoJournalSync bool
	// TrimInterval is how often, while events are being written or acked,
	// the pages of Badger's tables and logs this process has mapped are
	// given back (kv.TrimMapped; default 100ms, negative: never). A drain
	// of a million events reads ~3 MiB of tables in 100 ms; a round costs
	// a read of /proc/self/maps and a madvise per mapped file.
	TrimInterval time.Duration
}

func (o *Options) defaults() {
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = time.Minute
	}
	if o.MaxGroup <= 0 {
		o.MaxGroup = 512
	}
	if o.Linger == 0 {
		o.Linger = 500 * time.Microsecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.JournalAbove == 0 {
		o.JournalAbove = 2 * time.Millisecond
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Log is the outbox. All methods are safe for concurrent use.
type Log struct {
	opts  Options
	db    *badger.DB
	clock *hlc.Clock
	log   *slog.Logger

	reqs   chan *appendReq
	sendMu sync.RWMutex
	notify chan struct{}
	guard  Guard

	mu      sync.Mutex
	closed  bool
	last    uint64 // highest committed seq
	acked   uint64
	pending uint64 // stored events above acked
	commits uint64 // group commits so far
	// horizon is the hub's backup horizon (see SetHorizon); horizonSet
	// is false while the hub takes no backups.
	horizon    uint64
	horizonSet bool
	// ackedBeforeBackup counts acked events deleted for room before a
	// backup covered them.
	ackedBeforeBackup uint64

	// pendMu orders changes of the ack cursor with deletions of stored
	// events, so the pending count is kept right: Ack counts the events it
	// acks after they may have been deleted by Prune, a block drop or a
	// telemetry drop, never while (found by the fault suite: a drain that
	// raced retention left pending above zero for good).
	pendMu sync.Mutex

	// doubt is set by a write of the outbox that failed after Badger may
	// have applied it, unsettled holds the event keys of such commits (see
	// settle); both guarded by mu.
	doubt     bool
	unsettled [][]byte

	// The journal, when there is one (Options.Journal), and what of it
	// is not yet in Badger: applied is the highest seq Badger's synced
	// commits hold (last, while nothing waits), toApply the journaled
	// groups waiting, applyErr the last failed attempt's error (nil when
	// the last one succeeded), committerDone that no more will come. All
	// guarded by mu; applied changes are broadcast on applyCond.
	jr            *journal.Journal
	applied       uint64
	toApply       []applyGroup
	queued        int // bytes of the events in toApply
	applyErr      error
	committerDone bool
	applyCond     *sync.Cond
	applyWake     chan struct{}
	settleMu      sync.Mutex
	// commitTime is a moving average of Badger's synced commits, direct
	// or the applier's; viaJournal whether groups go through the journal
	// (see Options.JournalAbove). Guarded by mu.
	commitTime time.Duration
	viaJournal bool

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Guard may refuse an append before it is written, e.g. to keep a disk
// reserve. It is called from the committer; it must be fast.
type Guard interface {
	Admit(kind event.Kind, size int) error
}

type appendReq struct {
	kind  event.Kind
	body  []byte
	build Builder
	ev    event.Event
	err   error
	done  chan struct{}
}

// Builder makes an event's body inside the commit's transaction, so that a
// decision it takes from stored state (a seat from the kiosk's share) is
// atomic with the event that records it. It may read and write txn, and
// must write nothing when it returns an error; that error fails only its
// own append.
type Builder func(txn *badger.Txn) (event.Body, error)

// Open opens or creates the outbox in db (the edge's store, edge/store)
// and starts its committer and maintenance loops. Close stops them; the
// store stays open for its owner to close.
func Open(db *badger.DB, opts Options) (*Log, error) {
	opts.defaults()
	if err := event.ValidID(opts.Device); err != nil {
		return nil, fmt.Errorf("outbox device id: %w", err)
	}
	l := &Log{
		opts:      opts,
		db:        db,
		log:       opts.Logger,
		reqs:      make(chan *appendReq, opts.MaxGroup),
		notify:    make(chan struct{}, 1),
		applyWake: make(chan struct{}, 1),
	}
	l.applyCond = sync.NewCond(&l.mu)
	var floor hlc.Timestamp
	err := db.Update(func(txn *badger.Txn) error {
		// Sequence numbers mean something only for one device: a data dir is
		// bound to the first device that opens it.
		item, err := txn.Get([]byte(keyDevice))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			return txn.Set([]byte(keyDevice), []byte(opts.Device))
		case err != nil:
			return err
		default:
			owner, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if string(owner) != opts.Device {
				return fmt.Errorf("%w: it holds %s's events, not %s's", ErrDeviceMismatch, owner, opts.Device)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox state: %w", err)
	}
	if opts.Journal != "" {
		if err := l.openJournal(); err != nil {
			return nil, err
		}
	}
	err = db.View(func(txn *badger.Txn) error {
		var err error
		if l.last, err = kv.GetU64(txn, []byte(keyLast)); err != nil {
			return err
		}
		if l.acked, err = kv.GetU64(txn, []byte(keyAcked)); err != nil {
			return err
		}
		if l.horizon, l.horizonSet, err = loadHorizon(txn); err != nil {
			return err
		}
		f, err := kv.GetU64(txn, []byte(keyHLC))
		floor = hlc.Timestamp(f)
		return err
	})
	if err == nil {
		l.pending, err = l.openPending()
	}
	if err != nil {
		l.closeJournal()
		return nil, fmt.Errorf("read outbox state: %w", err)
	}
	l.applied = l.last
	l.clock = hlc.NewClock(opts.Now, floor)
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	if l.jr != nil {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.applyLoop(ctx) }()
	}
	l.wg.Add(3)
	go func() { defer l.wg.Done(); l.commitLoop() }()
	go func() { defer l.wg.Done(); l.maintain(ctx) }()
	go func() { defer l.wg.Done(); l.trimMapped(ctx) }()
	return l, nil
}

// SetGuard installs a guard consulted before every append.
func (l *Log) SetGuard(g Guard) { l.mu.Lock(); l.guard = g; l.mu.Unlock() }

// Clock is the edge's hybrid logical clock, persisted with every append.
func (l *Log) Clock() *hlc.Clock { return l.clock }

// Device is the id of the device this log belongs to.
func (l *Log) Device() string { return l.opts.Device }

// Append records body as the device's next event and returns it once it is
// synced to disk. Concurrent appends share one commit and its fsyncs.
func (l *Log) Append(ctx context.Context, body event.Body) (event.Event, error) {
	if err := body.Validate(); err != nil {
		return event.Event{}, err
	}
	raw, err := event.Marshal(body)
	if err != nil {
		return event.Event{}, fmt.Errorf("encode %s: %w", body.Kind(), err)
	}
	return l.enqueue(ctx, &appendReq{kind: body.Kind(), body: raw, done: make(chan struct{})})
}

func (l *Log) enqueue(ctx context.Context, r *appendReq) (event.Event, error) {
	// The read lock keeps Close from closing reqs under a sender.
	l.sendMu.RLock()
	if l.isClosed() {
		l.sendMu.RUnlock()
		return event.Event{}, ErrClosed
	}
	select {
	case l.reqs <- r:
		l.sendMu.RUnlock()
	case <-ctx.Done():
		l.sendMu.RUnlock()
		return event.Event{}, ctx.Err()
	}
	// Once queued the request is committed or failed by the committer;
	// waiting for that even if ctx ends keeps the answer truthful.
	<-r.done
	return r.ev, r.err
}

// AppendFunc is Append with the body built by build inside the commit; kind
// is what build will return (the disk guard decides on it beforehand).
func (l *Log) AppendFunc(ctx context.Context, kind event.Kind, build Builder) (event.Event, error) {
	return l.enqueue(ctx, &appendReq{kind: kind, build: build, done: make(chan struct{})})
}

func (l *Log) runBuilder(txn *badger.Txn, r *appendReq) error {
	body, err := r.build(txn)
	if err != nil {
		return err
	}
	if body.Kind() != r.kind {
		return fmt.Errorf("append: builder made a %s, announced a %s", body.Kind(), r.kind)
	}
	if err := body.Validate(); err != nil {
		return err
	}
	r.body, err = event.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s: %w", body.Kind(), err)
	}
	return nil
}

func (l *Log) commitLoop() {
	group := make([]*appendReq, 0, l.opts.MaxGroup)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	writers := 0           // appends outstanding when the last commit ended
	var took time.Duration // how long the last commit took
	for r := range l.reqs {
		group = append(group[:0], r)
		// Take what else is already waiting: these share the fsync.
		group, open := l.take(group, l.opts.MaxGroup, nil)
		// Writers answered by the last commit come back together; a commit
		// that left without them would split the writers into two cohorts
		// that alternate in half-sized groups, each paying its own fsync.
		// So while more writers were active than are waiting, wait briefly
		// for them. A lone writer never waits. Briefly is relative to the
		// commit: a writer that misses this group waits for a whole one,
		// so when commits are slow (an SD card's fsync takes milliseconds,
		// two per commit) waiting up to half of one for the writers still
		// on their way back costs less than splitting them.
		if open && len(group) < writers && l.opts.Linger > 0 {
			linger.Reset(lingerFor(l.opts.Linger, took))
			group, _ = l.take(group, min(writers, l.opts.MaxGroup), linger.C)
			linger.Stop()
		}
		// Writers active = those this commit answered plus those already
		// waiting before it answered them; counting the queue after the
		// answers would count a lone writer's next append as a second
		// writer and make it wait for nobody.
		start := time.Now()
		queued := l.commit(group)
		took = time.Since(start)
		writers = len(group) + queued
	}
	l.mu.Lock()
	l.committerDone = true
	l.mu.Unlock()
	l.wakeApplier()
}

// maxLinger bounds the linger that slow commits ask for: a disk stalled
// for seconds must not make writers wait as long again for company.
const maxLinger = 25 * time.Millisecond

// lingerFor is how long a group may wait for writers: base, or half the
// last commit's time when that is longer, up to maxLinger.
func lingerFor(base, lastCommit time.Duration) time.Duration {
	return max(base, min(lastCommit/2, maxLinger))
}

// maxGroupBytes bounds the encoded events of one group commit, far under
// Badger's largest transaction for the small profile (15 % of a 4 MiB
// memtable, 614 KiB): a group of long reports must not fail whole as too big.
const maxGroupBytes = 256 << 10

// builtSize is what a builder's body is counted as before it is built.
const builtSize = 512

func groupBytes(group []*appendReq) int {
	n := 0
	for _, r := range group {
		if r.build != nil {
			n += builtSize
		} else {
			n += len(r.body)
		}
	}
	return n
}

// take adds waiting requests to group until it holds n. With wait nil it
// takes only what is queued; otherwise it waits for more until wait fires.
// It reports whether reqs is still open.
func (l *Log) take(group []*appendReq, n int, wait <-chan time.Time) ([]*appendReq, bool) {
	size := groupBytes(group)
	for len(group) < n && size < maxGroupBytes {
		if wait == nil {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					return group, false
				}
				group = append(group, r)
				size += groupBytes(group[len(group)-1:])
				continue
			default:
				return group, true
			}
		}
		select {
		case r, ok := <-l.reqs:
			if !ok {
				return group, false
			}
			group = append(group, r)
			size += groupBytes(group[len(group)-1:])
		case <-wait:
			return group, true
		}
	}
	return group, true
}

// commit writes group in one synced transaction and answers each append.
// It returns how many appends were queued just before the answers went out.
func (l *Log) commit(group []*appendReq) (queued int) {
	l.mu.Lock()
	next, guard := l.last+1, l.guard
	l.mu.Unlock()

	queued = len(l.reqs)
	admitted := group[:0:0]
	for _, r := range group {
		if guard != nil {
			if err := guard.Admit(r.kind, len(r.body)); err != nil {
				r.err = err
				close(r.done)
				continue
			}
		}
		admitted = append(admitted, r)
	}
	if len(admitted) == 0 {
		return queued
	}
	if err := l.settle(); err != nil {
		for _, r := range admitted {
			r.err = err
			close(r.done)
		}
		return queued
	}
	if l.jr != nil {
		if !hasBuilder(admitted) && l.journalPays() {
			return l.commitJournal(admitted, next, queued)
		}
		// A builder decides from Badger's state and writes there: it
		// must see every journaled group applied, and its writes take
		// Badger's synced commit.
		if err := l.waitApplied(); err != nil {
			for _, r := range admitted {
				r.err = fmt.Errorf("append event: %w", err)
				close(r.done)
			}
			return queued
		}
	}
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	var err error
	seq := next
	built := admitted[:0:0]
	var unreached []*appendReq // admitted appends after a write error stopped the loop
	for i, r := range admitted {
		if r.build != nil {
			if berr := l.runBuilder(txn, r); berr != nil {
				r.err = berr
				close(r.done)
				continue
			}
		}
		built = append(built, r)
		r.ev = event.Event{Device: l.opts.Device, Seq: seq, HLC: l.clock.Now(), Kind: r.kind, Body: r.body}
		stored := r.ev
		stored.Device = "" // implied by the store
		var data []byte
		if data, err = stored.Encode(); err == nil {
			err = txn.Set(eventKey(seq), data)
		}
		if err != nil {
			unreached = admitted[i+1:]
			break
		}
		seq++
	}
	admitted = built
	if len(admitted) == 0 {
		return queued
	}
	last := seq - 1
	if err == nil {
		err = txn.Set([]byte(keyLast), kv.U64(last))
	}
	if err == nil {
		err = txn.Set([]byte(keyHLC), kv.U64(uint64(l.clock.Last())))
	}
	if err == nil {
		start := time.Now()
		err = txn.Commit()
		if err == nil {
			l.noteCommit(time.Since(start))
		}
	}
	if err != nil {
		err = fmt.Errorf("append event: %w", err)
		l.log.Error("outbox commit failed", "events", len(admitted), "err", err)
		// Every append of the group gets the answer, also those the loop
		// never reached: a waiter left without one would hang for good.
		for _, r := range append(admitted, unreached...) {
			r.ev, r.err = event.Event{}, err
			close(r.done)
		}
		l.mu.Lock()
		l.doubt = true
		for s := next; s <= last; s++ {
			l.unsettled = append(l.unsettled, eventKey(s))
		}
		l.mu.Unlock()
		if serr := l.settle(); serr != nil {
			l.log.Error("store left in doubt by a failed commit; writes are refused until it settles", "err", serr)
		}
		return queued
	}
	queued = len(l.reqs) // after the fsync: whoever waited through it
	l.mu.Lock()
	l.last, l.applied = last, last
	l.pending += uint64(len(admitted))
	l.commits++
	l.mu.Unlock()
	for _, r := range admitted {
		close(r.done)
	}
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return queued
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Notify is signalled after appends; a reader that misses a signal still
// sees the events on its next Read.
func (l *Log) Notify() <-chan struct{} { return l.notify }

// Read returns up to maxEvents stored events with seq > after, in seq order,
// stopping early once their encoded size reaches maxBytes (at least one
// event is returned when any exists). Seqs may skip where telemetry was
// dropped.
func (l *Log) Read(after uint64, maxEvents, maxBytes int) (events []event.Event, err error) {
	// Only what a commit reported durable: Badger applies a transaction
	// to the memtable before syncing its WAL, so a commit that failed on
	// an I/O error stays readable and its seqs are assigned again by the
	// next commit. Sending such a ghost would make the hub drop the real
	// event later written under the same seq (found by the fault suite).
	last := l.durable()
	err = l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		size := 0
		for it.Seek(eventKey(after + 1)); it.Valid() && len(events) < maxEvents; it.Next() {
			if seqOf(it.Item().Key()) > last {
				break
			}
			ev, n, err := storedEvent(it.Item())
			size += n
			if err != nil {
				return fmt.Errorf("read seq %d: %w", seqOf(it.Item().Key()), err)
			}
			ev.Device = l.opts.Device
			events = append(events, ev)
			if size >= maxBytes {
				break
			}
		}
		return nil
	})
	return events, err
}

// Stats is a snapshot of the log's cursors.
type Stats struct {
	LastSeq  uint64
	AckedSeq uint64
	Pending  uint64 // stored events not yet acked by the hub
	Commits  uint64 // synced commits since open; fewer than appends under load
	// AckedDroppedBeforeBackup counts acked events deleted for disk room
	// before the hub's backups covered them (since open).
	AckedDroppedBeforeBackup uint64
}

// Stats returns the current cursors.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{LastSeq: l.last, AckedSeq: l.acked, Pending: l.pending, Commits: l.commits,
		AckedDroppedBeforeBackup: l.ackedBeforeBackup}
}

// Cursors is Stats in the form the uplink consumes.
func (l *Log) Cursors() (last, acked, pending uint64) {
	st := l.Stats()
	return st.LastSeq, st.AckedSeq, st.Pending
}

// OldestUnacked is the HLC of the oldest event the hub has not acked, or 0.
func (l *Log) OldestUnacked() (hlc.Timestamp, error) {
	l.mu.Lock()
	acked := l.acked
	l.mu.Unlock()
	evs, err := l.Read(acked, 1, 1)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	return evs[0].HLC, nil
}

// Ack records that the hub holds every seq up to seq. When fromHello is set
// the hub's word replaces the local cursor even if it is lower (the hub was
// restored and wants events resent); otherwise acks only move forward.
func (l *Log) Ack(seq uint64, fromHello bool) error {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	l.mu.Lock()
	if seq > l.last {
		seq = l.last // the hub cannot hold what was never written here
	}
	if seq == l.acked || (!fromHello && seq < l.acked) {
		l.mu.Unlock()
		return nil
	}
	prev := l.acked
	// Every seq above the cursor is stored unless telemetry was dropped
	// there; while none was, an ack forward discounts exactly its span and
	// the keys need no counting (a catch-up acks hundreds of times a second).
	solid := seq > prev && l.pending == l.last-prev
	caughtUp := seq == l.last
	l.acked = seq
	l.mu.Unlock()
	if err := l.db.Update(func(txn *badger.Txn) error {
		switch {
		case seq < prev:
			// Deleted acked events (retention, reclaim) may lie in (seq, prev].
			if err := txn.Set([]byte(keyHoles), kv.U64(1)); err != nil {
				return err
			}
		case caughtUp:
			// Nothing is above the cursor, so no hole is either; appends
			// from here on are dense again.
			if err := txn.Set([]byte(keyHoles), kv.U64(0)); err != nil {
				return err
			}
		}
		return txn.Set([]byte(keyAcked), kv.U64(seq))
	}); err != nil {
		l.mu.Lock()
		l.doubt = true // the next commit settles the store first
		l.mu.Unlock()
		return fmt.Errorf("store ack cursor: %w", err)
	}
	// Keep the pending count without rescanning the backlog: count only the
	// keys between the old and the new cursor.
	lo, hi := min(prev, seq), max(prev, seq)
	n := hi - lo
	if !solid {
		var err error
		if n, err = l.countRange(lo, hi); err != nil {
			return err
		}
	}
	l.mu.Lock()
	if seq > prev {
		l.pending -= min(n, l.pending)
	} else {
		l.pending += n
		l.log.Warn("hub acked less than before; resending", "acked", seq, "was", prev)
	}
	l.mu.Unlock()
	l.releaseJournal()
	return nil
}

// openPending sizes the backlog at Open. Seqs are assigned densely and a
// failed commit's are reused, so (acked, last] holds every seq unless
// keyHoles says some were deleted; only then are the keys counted. A store
// written before keyHoles existed is counted once and gets the key.
func (l *Log) openPending() (uint64, error) {
	var holes uint64
	known := true
	err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyHoles))
		if errors.Is(err, badger.ErrKeyNotFound) {
			known = false
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { holes = kv.ParseU64(v); return nil })
	})
	if err != nil {
		return 0, fmt.Errorf("read holes flag: %w", err)
	}
	if known && holes == 0 {
		return l.last - l.acked, nil
	}
	n, err := l.countRange(l.acked, l.last) // ghosts of failed commits above last do not wait
	if err != nil || known {
		return n, err
	}
	if n == l.last-l.acked {
		holes = 0
	} else {
		holes = 1
	}
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyHoles), kv.U64(holes)) }); err != nil {
		return 0, fmt.Errorf("store holes flag: %w", err)
	}
	return n, nil
}

// eventKey is the key of the event of seq.
func eventKey(seq uint64) []byte { return kv.Key(prefixEvent, kv.U64(seq)) }

// seqOf is the seq of an event key.
func seqOf(key []byte) uint64 { return kv.ParseU64(key[len(prefixEvent):]) }

// eventIterator iterates over the stored events in seq order. Values live
// in the tree (see kv's value threshold) and are read with their keys, so
// Badger's prefetching would only spawn a goroutine per item.
func eventIterator(txn *badger.Txn) *badger.Iterator {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefixEvent)
	opts.PrefetchValues = false
	return txn.NewIterator(opts)
}

// storedEvent decodes the event an iterator item holds (its device left
// empty, as stored) and says how many bytes it took. Decoding copies:
// values die with the transaction.
func storedEvent(item *badger.Item) (ev event.Event, size int, err error) {
	err = item.Value(func(v []byte) error {
		size = len(v)
		ev, err = event.DecodeEvent(v)
		return err
	})
	return ev, size, err
}

// countRange counts stored events with after < seq <= upto (keys only).
func (l *Log) countRange(after, upto uint64) (uint64, error) {
	var n uint64
	err := l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		for it.Seek(eventKey(after + 1)); it.Valid(); it.Next() {
			if seqOf(it.Item().Key()) > upto {
				break
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count pending events: %w", err)
	}
	return n, nil
}

// Prune deletes acked events older than the retention window that the
// hub's backups cover, and returns how many it deleted.
func (l *Log) Prune() (int, error) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	l.mu.Lock()
	acked := l.expirable()
	l.mu.Unlock()
	cutoff := hlc.FromTime(l.opts.Now().Add(-l.opts.Retention))
	var keys [][]byte
	err := l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			seq := seqOf(item.Key())
			if seq > acked {
				break
			}
			ev, _, err := storedEvent(item)
			if err != nil {
				return err
			}
			if ev.HLC > cutoff {
				break // events are in HLC order: the rest are younger
			}
			keys = append(keys, item.KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan for pruning: %w", err)
	}
	return l.deleteKeys(keys, "prune")
}

func (l *Log) maintain(ctx context.Context) {
	t := time.NewTicker(l.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := l.ReclaimExpired(ctx); err != nil {
			l.log.Warn("drop expired blocks of acked events", "err", err)
		} else if n > 0 {
			l.log.Debug("dropped expired acked events", "count", n)
		}
		if n, err := l.Prune(); err != nil {
			l.log.Warn("prune acked events", "err", err)
		} else if n > 0 {
			l.log.Debug("pruned acked events", "count", n)
		}
	}
}

// trimMapped gives back the mapped table and log pages a busy outbox has
// touched (see kv.TrimMapped): a drain reads a backlog's tables once, and
// without this every page it read stayed in RSS. Idle, it does nothing.
func (l *Log) trimMapped(ctx context.Context) {
	if l.opts.TrimInterval < 0 {
		return
	}
	t := time.NewTicker(l.opts.TrimInterval)
	defer t.Stop()
	var seen [2]uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		now := [2]uint64{l.commits, l.acked}
		l.mu.Unlock()
		if now == seen {
			continue
		}
		seen = now
		if _, err := kv.TrimMapped(l.db.Opts().Dir); err != nil {
			l.log.Info("not trimming mapped tables", "err", err)
			return
		}
	}
}

// Close stops the loops, fails nothing already accepted (queued appends are
// committed first); the store it was opened in stays open for its owner.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.sendMu.Lock()
	close(l.reqs)
	l.sendMu.Unlock()
	l.stop()
	l.wg.Wait()
	return l.closeJournal()
}
