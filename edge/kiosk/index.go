package kiosk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
	"linli/shared/wire"
)

// Key layout of the resident index inside the edge store (shared with the
// outbox, the replica and the seats):
//
//	k/cursor                    seq of the last own event indexed
//	k/rep/{resident}/{report}   IndexedReport: a report the resident filed or said "me too" to
//	k/in/{resident}/{activity}  IndexedCheckin: the resident's last check-in or -out here
//	k/rate/{resident}/{target}  IndexedRating: the resident's latest rating here
//	k/seen/{resident}/          when the resident last looked at their reports here
//	k/number                    the last report number this kiosk gave
//
// Resident ids cannot hold '/', so one resident's keys never run into
// another's.
const (
	keyIndexCursor = "k/cursor"
	prefixReports  = "k/rep/"
	prefixCheckins = "k/in/"
	prefixRatings  = "k/rate/"
	prefixSeen     = "k/seen/"
	keyNumber      = "k/number"
)

// Tail is the kiosk's own event log as the index reads it.
type Tail interface {
	// Read returns up to maxEvents events with seq > after, in seq order.
	Read(after uint64, maxEvents, maxBytes int) ([]event.Event, error)
	Cursors() (last, acked, pending uint64)
}

// Index remembers what each resident did at this kiosk — reports filed,
// "me too" votes, check-ins and ratings — so the UI can list them after the
// outbox has deleted the events (acked events live only for the retention
// window) and the hub's views, which carry no resident ids for reports,
// cannot tell. It is derived state: it follows the outbox with a cursor of
// its own, so it needs no hook in the write path (no extra fsync per
// check-in under load) and a crash between an append and its indexing
// only delays the entry until the next catch-up.
type Index struct {
	db   *badger.DB
	tail Tail
	log  *slog.Logger
	// Interval is how often Run catches up when nothing asks it to; it must
	// stay far below the outbox retention, or entries could be pruned
	// before they are seen.
	Interval time.Duration

	mu     sync.Mutex // one catch-up at a time
	cursor uint64
}

// IndexedReport is a report a resident filed here, or said "me too" to.
type IndexedReport struct {
	ID    string `cbor:"1,keyasint"`
	Voted bool   `cbor:"2,keyasint,omitempty"` // a "me too", not filed by them
	Seq   uint64 `cbor:"3,keyasint"`           // of the event, for newest-first order
}

// IndexedCheckin is a resident's last check-in or check-out of an activity
// at this kiosk, and the answer the kiosk gave.
type IndexedCheckin struct {
	Activity string        `cbor:"1,keyasint" json:"activity"`
	Action   string        `cbor:"2,keyasint" json:"action"`
	Status   string        `cbor:"3,keyasint,omitempty" json:"status,omitempty"`
	HLC      hlc.Timestamp `cbor:"4,keyasint" json:"-"`
	Time     time.Time     `cbor:"-" json:"time"`
}

// IndexedRating is a resident's latest rating of a target at this kiosk.
type IndexedRating struct {
	Target string        `cbor:"1,keyasint" json:"target"`
	Score  int           `cbor:"2,keyasint" json:"score"`
	HLC    hlc.Timestamp `cbor:"3,keyasint" json:"-"`
	Time   time.Time     `cbor:"-" json:"time"`
}

// NewIndex opens the index kept in db over tail.
func NewIndex(db *badger.DB, tail Tail, log *slog.Logger) (*Index, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := &Index{db: db, tail: tail, log: log, Interval: 2 * time.Second}
	err := db.View(func(txn *badger.Txn) error {
		var err error
		x.cursor, err = kv.GetU64(txn, []byte(keyIndexCursor))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read index cursor: %w", err)
	}
	return x, nil
}

// Run catches up every Interval until ctx ends; readers catch up too, so
// the interval only bounds how stale an unread index may get.
func (x *Index) Run(ctx context.Context) {
	t := time.NewTicker(x.Interval)
	defer t.Stop()
	for {
		if err := x.CatchUp(); err != nil && ctx.Err() == nil {
			x.log.Warn("resident index catch-up", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexPage bounds one catch-up transaction.
const indexPage = 512

// CatchUp indexes every own event written since the last catch-up.
func (x *Index) CatchUp() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.catchUp()
}

func (x *Index) catchUp() error {
	for {
		last, _, _ := x.tail.Cursors()
		if x.cursor >= last {
			return nil
		}
		evs, err := x.tail.Read(x.cursor, indexPage, 1<<20)
		if err != nil {
			return fmt.Errorf("read own events after %d: %w", x.cursor, err)
		}
		if len(evs) == 0 {
			return nil // the rest was dropped (telemetry) or is not visible yet
		}
		next := evs[len(evs)-1].Seq
		err = x.db.Update(func(txn *badger.Txn) error {
			for i := range evs {
				if err := indexEvent(txn, &evs[i]); err != nil {
					return err
				}
			}
			return txn.Set([]byte(keyIndexCursor), kv.U64(next))
		})
		if err != nil {
			return fmt.Errorf("index events up to %d: %w", next, err)
		}
		x.cursor = next
	}
}

// indexEvent records what ev tells about a resident; other kinds and bodies
// that do not decode are skipped (the outbox validated them on the way in).
func indexEvent(txn *badger.Txn, ev *event.Event) error {
	switch ev.Kind {
	case event.KindReport, event.KindVote, event.KindCheckin, event.KindRating:
	default:
		return nil
	}
	body, err := ev.Decode()
	if err != nil {
		return nil
	}
	switch b := body.(type) {
	case *event.Report:
		if b.Resident == "" {
			return nil // anonymous: nobody may find it by resident
		}
		return put(txn, prefixReports, b.Resident, ev.ID(), IndexedReport{ID: ev.ID(), Seq: ev.Seq})
	case *event.Vote:
		key := indexKey(prefixReports, b.Resident, b.Report)
		if _, err := txn.Get(key); err == nil {
			return nil // filed or voted already: the first relation stands
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return put(txn, prefixReports, b.Resident, b.Report, IndexedReport{ID: b.Report, Voted: true, Seq: ev.Seq})
	case *event.Checkin:
		return put(txn, prefixCheckins, b.Resident, b.Activity,
			IndexedCheckin{Activity: b.Activity, Action: b.Action, Status: b.Status, HLC: ev.HLC})
	case *event.Rating:
		return put(txn, prefixRatings, b.Resident, b.Target, IndexedRating{Target: b.Target, Score: b.Score, HLC: ev.HLC})
	}
	return nil
}

// Erase forgets everything the index holds about resident. It first
// indexes what the outbox holds, under the same lock, so that no event of
// the resident written before the erasure can be indexed after it.
func (x *Index) Erase(resident string) error {
	if err := event.ValidID(resident); err != nil {
		return fmt.Errorf("resident %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.catchUp(); err != nil {
		return err
	}
	return x.db.Update(func(txn *badger.Txn) error {
		for _, prefix := range []string{prefixReports, prefixCheckins, prefixRatings, prefixSeen} {
			if err := kv.DeletePrefix(txn, []byte(prefix+resident+"/")); err != nil {
				return err
			}
		}
		return nil
	})
}

// Forget carries out the erasures the hub sends down: for each resident
// change (wire.EntityResident, the hub's deletion request) the resident's
// entries leave the index. It suits the replica's AfterApply.
func (x *Index) Forget(cs []wire.Change) {
	for _, c := range cs {
		if c.Entity != wire.EntityResident || c.Deleted {
			continue
		}
		if err := x.Erase(c.ID); err != nil {
			x.log.Error("erase a resident from the kiosk index", "err", err)
		}
	}
}

func indexKey(prefix, resident, id string) []byte {
	return []byte(prefix + resident + "/" + id)
}

func put(txn *badger.Txn, prefix, resident, id string, v any) error {
	val, err := event.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(indexKey(prefix, resident, id), val)
}

// scan decodes every entry of one resident under prefix.
func scan[T any](x *Index, prefix, resident string) ([]T, error) {
	if err := event.ValidID(resident); err != nil {
		return nil, fmt.Errorf("resident %w", err)
	}
	if err := x.CatchUp(); err != nil {
		// Stale is better than nothing: show what is indexed.
		x.log.Warn("resident index catch-up before a read", "err", err)
	}
	var out []T
	err := x.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix + resident + "/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var v T
			if err := it.Item().Value(func(b []byte) error { return event.UnmarshalOwn(b, &v) }); err != nil {
				return fmt.Errorf("index entry %s: %w", it.Item().Key(), err)
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// Reports lists the reports resident filed or voted for here, newest first.
func (x *Index) Reports(resident string) ([]IndexedReport, error) {
	out, err := scan[IndexedReport](x, prefixReports, resident)
	slices.SortFunc(out, func(a, b IndexedReport) int { return cmp.Compare(b.Seq, a.Seq) })
	return out, err
}

// Checkins lists resident's last action per activity here, newest first.
func (x *Index) Checkins(resident string) ([]IndexedCheckin, error) {
	out, err := scan[IndexedCheckin](x, prefixCheckins, resident)
	for i := range out {
		out[i].Time = out[i].HLC.Time()
	}
	slices.SortFunc(out, func(a, b IndexedCheckin) int { return cmp.Compare(b.HLC, a.HLC) })
	return out, err
}

// Ratings lists resident's latest rating per target here, newest first.
func (x *Index) Ratings(resident string) ([]IndexedRating, error) {
	out, err := scan[IndexedRating](x, prefixRatings, resident)
	for i := range out {
		out[i].Time = out[i].HLC.Time()
	}
	slices.SortFunc(out, func(a, b IndexedRating) int { return cmp.Compare(b.HLC, a.HLC) })
	return out, err
}
