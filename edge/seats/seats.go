// Package seats is a kiosk's side of the activity escrow: it answers a
// check-in at once from the kiosk's share of seats, offline too, and gives
// unused seats back when the hub recalls them. Each answer is decided in
// the same transaction that records the check-in, so a confirmation given
// is a confirmation stored.
package seats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/wire"
)

// Key layout in the edge store:
//
//	s/ledger/{activity}              merge.Ledger
//	s/mine/{activity}/{resident}     the last answer this kiosk gave (status)
//	s/came/{activity}/{resident}     the resident checked in here inside the window
//	s/res/{activity}/{resident}      a resident this kiosk confirmed (the
//	                                 ledger's Residents, one key each: an
//	                                 activity without a limit has thousands,
//	                                 and a check-in must not rewrite them all)
const (
	prefixLedger = "s/ledger/"
	prefixMine   = "s/mine/"
	prefixCame   = "s/came/"
	prefixRes    = "s/res/"
)

// ErrEnded is the answer to a check-in for an activity that has ended.
var ErrEnded = errors.New("the activity has ended")

// Answer is what the kiosk tells a resident who checks in.
type Answer struct {
	// Status is confirmed, waitlisted or recorded (the hub decides:
	// the kiosk does not know the activity, or its share is used up while
	// the hub may still have a seat).
	Status string
	// Act is event.ActSignup or event.ActAttendance by the activity's
	// window; "" when the kiosk does not know the activity.
	Act string
}

// Seats decides check-ins for one kiosk.
type Seats struct {
	db     *badger.DB // the edge's store, where the ledgers are
	log    *outbox.Log
	rep    *replica.Replica
	device string
	lg     *slog.Logger
	// pending is signalled when an applied change may call for a release.
	pending chan struct{}

	// changed holds the activities applied since the last look for a
	// release due (all: every ledger, at start): a busy activity's ledger
	// is rewritten at each check-in, and iterating over the ledgers'
	// thousands of versions after each applied change cost as much as a
	// check-in.
	mu      sync.Mutex
	changed map[string]bool
	all     bool
}

// New wires the kiosk's seats to the edge's store (db, where the ledgers
// are), its outbox and replica: ledgers follow every activity the replica
// applies.
func New(db *badger.DB, log *outbox.Log, rep *replica.Replica, lg *slog.Logger) *Seats {
	s := &Seats{db: db, log: log, rep: rep, device: log.Device(), lg: lg, pending: make(chan struct{}, 1),
		changed: map[string]bool{}}
	rep.OnApply(s.onApply)
	rep.AfterApply(func(cs []wire.Change) {
		s.mu.Lock()
		n := len(s.changed)
		for _, c := range cs {
			if c.Entity == wire.EntityActivity {
				s.changed[c.ID] = true
			}
		}
		poke := len(s.changed) > n
		s.mu.Unlock()
		if poke {
			s.poke()
		}
	})
	return s
}

func (s *Seats) poke() {
	select {
	case s.pending <- struct{}{}:
	default:
	}
}

// Run answers recalls (records releases) until ctx ends; it also checks
// every ledger once at start, for a recall applied just before a crash.
func (s *Seats) Run(ctx context.Context) {
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
	s.poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.pending:
			if err := s.releaseAll(ctx); err != nil && ctx.Err() == nil {
				s.lg.Error("release recalled seats", "err", err)
			}
		}
	}
}

func ledgerKey(activity string) []byte { return []byte(prefixLedger + activity) }

func mineKey(activity, resident string) []byte {
	return []byte(prefixMine + activity + "/" + resident)
}

func cameKey(activity, resident string) []byte {
	return []byte(prefixCame + activity + "/" + resident)
}

func resKey(activity, resident string) []byte {
	return []byte(prefixRes + activity + "/" + resident)
}

// loadLedger reads the ledger of activity without the residents it
// confirmed (Residents holds only those a ledger stored before they got
// keys of their own, which storeLedger moves out).
func loadLedger(txn *badger.Txn, activity string) (*merge.Ledger, error) {
	item, err := txn.Get(ledgerKey(activity))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return merge.NewLedger(activity), nil
	}
	if err != nil {
		return nil, err
	}
	l := new(merge.Ledger)
	if err := item.Value(func(v []byte) error { return event.UnmarshalOwn(v, l) }); err != nil {
		return nil, fmt.Errorf("ledger of %s: %w", activity, err)
	}
	return l, nil
}

// withResidents adds to l.Residents the residents this kiosk confirmed:
// all of them, or only resident when it is not "".
func withResidents(txn *badger.Txn, l *merge.Ledger, resident string) error {
	if resident != "" {
		_, err := txn.Get(resKey(l.Activity, resident))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if i, found := slices.BinarySearch(l.Residents, resident); !found {
			l.Residents = slices.Insert(l.Residents, i, resident)
		}
		return nil
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = resKey(l.Activity, "")
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		r := string(it.Item().Key()[len(opts.Prefix):])
		if i, found := slices.BinarySearch(l.Residents, r); !found {
			l.Residents = slices.Insert(l.Residents, i, r)
		}
	}
	return nil
}

// storeLedger writes the ledger, and a key for each resident in
// l.Residents (callers hold only the ones they read or added there).
func storeLedger(txn *badger.Txn, l *merge.Ledger) error {
	for _, r := range l.Residents {
		if err := txn.Set(resKey(l.Activity, r), nil); err != nil {
			return err
		}
	}
	c := *l
	c.Residents = nil
	val, err := event.Marshal(&c)
	if err != nil {
		return err
	}
	return txn.Set(ledgerKey(l.Activity), val)
}

// Fields of an activity's view (merge.ActivityView's keys) that check-ins
// look one resident up in.
const (
	fieldConfirmed = 8
	fieldAttended  = 14
)

// view reads the activity as last synced, and its head to look residents
// up in (listed). For a busy activity the replica keeps its lists apart
// (edge/replica), and the view then has them empty: a check-in looks its
// resident up instead of reading thousands of residents.
func (s *Seats) view(txn *badger.Txn, activity string) (*merge.ActivityView, replica.Head, error) {
	h, ok, err := replica.HeadTxn(txn, wire.EntityActivity, activity)
	if err != nil || !ok || h.Deleted {
		return nil, h, err
	}
	v := new(merge.ActivityView)
	if err := event.UnmarshalOwn(h.Body, v); err != nil {
		return nil, h, fmt.Errorf("activity view %s: %w", activity, err)
	}
	return v, h, nil
}

// listed tells whether the activity's view lists resident in field k (a
// sorted list of residents), reading one chunk of it.
func listed(txn *badger.Txn, h replica.Head, k int, resident string) (bool, error) {
	ok, err := h.Search(txn, k, replica.TextCmp(resident))
	if err != nil {
		return false, fmt.Errorf("activity view %s: look up %s: %w", h.ID, resident, err)
	}
	return ok, nil
}

// withConfirmed is v with Confirmed holding those of residents the view
// confirms: all HubMaySeat asks of it.
func withConfirmed(txn *badger.Txn, v *merge.ActivityView, h replica.Head, residents []string) (*merge.ActivityView, error) {
	c := *v
	c.Confirmed = nil
	for _, r := range residents { // sorted, so Confirmed is too
		ok, err := listed(txn, h, fieldConfirmed, r)
		if err != nil {
			return nil, err
		}
		if ok {
			c.Confirmed = append(c.Confirmed, r)
		}
	}
	return &c, nil
}

// onApply keeps the ledger in step with each activity view the replica
// applies (grants, recalls, capacity), inside the replica's transaction.
func (s *Seats) onApply(txn *badger.Txn, c wire.Change) error {
	if c.Entity != wire.EntityActivity || c.Deleted {
		return nil
	}
	// The view as the replica just stored it in txn: a delta's change
	// carries no body, and the lists are not needed here.
	v, _, err := s.view(txn, c.ID)
	if err != nil || v == nil {
		return err
	}
	l, err := loadLedger(txn, c.ID)
	if err != nil {
		return err
	}
	l.Sync(v, s.device) // a release, if due, is recorded by Run
	return storeLedger(txn, l)
}

// Checkin decides and records a check-in and returns the answer for the
// resident. By the activity's window (the kiosk's clock, which stamps the
// event too) an "in" is a sign-up before it opens and attendance inside
// it; after the end it is refused with ErrEnded and nothing is stored.
// Either takes a seat: confirmed while the kiosk's share lasts (or the hub
// confirmed the resident), recorded when the share is used up but the hub
// may still have one, waitlisted when none is left; recorded when the
// kiosk does not know the activity (the hub decides) and for check-outs.
func (s *Seats) Checkin(ctx context.Context, c *event.Checkin) (event.Event, Answer, error) {
	var answer Answer
	ev, err := s.log.AppendFunc(ctx, event.KindCheckin, func(txn *badger.Txn) (event.Body, error) {
		b := *c
		b.Status, b.Act = event.StatusRecorded, ""
		answer = Answer{Status: event.StatusRecorded}
		if b.Action != "in" {
			return &b, nil
		}
		v, h, err := s.view(txn, b.Activity)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return &b, nil
		}
		if v.Cancelled {
			return nil, fmt.Errorf("activity %s: %w", b.Activity, ErrCancelled)
		}
		b.Act = v.Window().Act(s.log.Clock().Now().WallMillis())
		if b.Act == event.ActEnded {
			return nil, ErrEnded
		}
		answer.Act = b.Act
		if b.Act == event.ActAttendance {
			if err := txn.Set(cameKey(b.Activity, b.Resident), nil); err != nil {
				return nil, err
			}
		}
		l, err := loadLedger(txn, b.Activity)
		if err != nil {
			return nil, err
		}
		if !l.Known {
			l.Sync(v, s.device)
		}
		// Without a limit only this resident's entry matters (Decide);
		// with one, HubMaySeat counts them all (no more than the share).
		one := b.Resident
		if v.Capacity != 0 || l.Capacity != 0 {
			one = ""
		}
		if err := withResidents(txn, l, one); err != nil {
			return nil, err
		}
		hubConfirmed, err := listed(txn, h, fieldConfirmed, b.Resident)
		if err != nil {
			return nil, err
		}
		mayView := v
		if v.Capacity != 0 {
			if mayView, err = withConfirmed(txn, v, h, l.Residents); err != nil {
				return nil, err
			}
		}
		// The status recorded may be empty where the answer is "confirmed":
		// a resident the hub confirmed already takes no seat of this share.
		answer.Status, b.Status = l.Decide(b.Resident, hubConfirmed, l.HubMaySeat(mayView))
		l.Record(&b)
		if err := storeLedger(txn, l); err != nil {
			return nil, err
		}
		if err := txn.Set(mineKey(b.Activity, b.Resident), []byte(answer.Status)); err != nil {
			return nil, err
		}
		return &b, nil
	})
	return ev, answer, err
}

var errNoRelease = errors.New("no release due")

// again puts back activities whose release failed, for the next look.
func (s *Seats) again(changed map[string]bool, all bool) {
	s.mu.Lock()
	maps.Copy(s.changed, changed)
	s.all = s.all || all
	s.mu.Unlock()
}

// ErrCancelled refuses a check-in to an activity the office cancelled:
// nothing is recorded, and the resident is told at once (a check-out
// still goes through).
var ErrCancelled = errors.New("the activity is cancelled")

// releaseAll records a release for every activity applied since the
// last look (every one at start) whose ledger says a recall is in force
// and unanswered.
func (s *Seats) releaseAll(ctx context.Context) error {
	s.mu.Lock()
	changed, all := s.changed, s.all
	s.changed, s.all = map[string]bool{}, false
	s.mu.Unlock()
	var due []string
	err := s.db.View(func(txn *badger.Txn) error {
		if !all {
			for _, a := range slices.Sorted(maps.Keys(changed)) {
				l, err := loadLedger(txn, a)
				if err != nil {
					return err
				}
				if l.Recalled && l.Released < l.Granted {
					due = append(due, a)
				}
			}
			return nil
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixLedger)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var l merge.Ledger
			if err := it.Item().Value(func(v []byte) error { return event.UnmarshalOwn(v, &l) }); err != nil {
				return err
			}
			if l.Recalled && l.Released < l.Granted {
				due = append(due, l.Activity)
			}
		}
		return nil
	})
	if err != nil {
		s.again(changed, all)
		return err
	}
	for _, a := range due {
		_, err := s.log.AppendFunc(ctx, event.KindRelease, func(txn *badger.Txn) (event.Body, error) {
			l, err := loadLedger(txn, a)
			if err != nil {
				return nil, err
			}
			v, _, err := s.view(txn, a)
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, errNoRelease
			}
			rel := l.Sync(v, s.device)
			if rel == nil {
				return nil, errNoRelease
			}
			l.Record(rel)
			if err := storeLedger(txn, l); err != nil {
				return nil, err
			}
			return rel, nil
		})
		if err != nil && !errors.Is(err, errNoRelease) {
			s.again(map[string]bool{a: true}, false)
			return fmt.Errorf("release %s: %w", a, err)
		}
		if err == nil {
			s.lg.Info("gave recalled seats back", "activity", a)
		}
	}
	return nil
}

// Mine is this kiosk's last answer to resident for activity ("" if none).
func (s *Seats) Mine(activity, resident string) (string, error) {
	var st string
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(mineKey(activity, resident))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		st = string(v)
		return err
	})
	return st, err
}

// Unseen counts the residents this kiosk confirmed for v's activity whom
// v does not list yet: seats taken here, offline too, that the hub's
// seats-left figure does not know of.
func (s *Seats) Unseen(v *merge.ActivityView) (uint32, error) {
	var n uint32
	err := s.db.View(func(txn *badger.Txn) error {
		l, err := loadLedger(txn, v.ID)
		if err == nil {
			err = withResidents(txn, l, "")
		}
		if err != nil {
			return err
		}
		for _, r := range l.Residents {
			if _, ok := slices.BinarySearch(v.Confirmed, r); !ok {
				n++
			}
		}
		return nil
	})
	return n, err
}

// Attended tells whether resident attended activity as far as this kiosk
// knows (the hub's view, or a check-in here inside the window); known is
// false when the kiosk does not know the activity.
func (s *Seats) Attended(activity, resident string) (known, attended bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		v, h, err := s.view(txn, activity)
		if err != nil || v == nil {
			return err
		}
		known = true
		if attended, err = listed(txn, h, fieldAttended, resident); err != nil || attended {
			return err
		}
		_, err = txn.Get(cameKey(activity, resident))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		attended = err == nil
		return err
	})
	return known, attended, err
}

// Erase forgets a resident after a deletion request: this kiosk's answers
// to them go, and the ledgers count them under token instead (a seat they
// took stays taken).
func (s *Seats) Erase(resident, token string) error {
	return s.db.Update(func(txn *badger.Txn) error {
		var drop, keep [][]byte
		for _, prefix := range []string{prefixMine, prefixCame, prefixRes} {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = []byte(prefix)
			opts.PrefetchValues = false
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				if k := it.Item().KeyCopy(nil); len(k) > len(resident) && string(k[len(k)-len(resident)-1:]) == "/"+resident {
					drop = append(drop, k)
					if prefix != prefixMine {
						// Attendance and a seat taken stay facts, under the token.
						keep = append(keep, append([]byte(nil), k[:len(k)-len(resident)]...))
					}
				}
			}
			it.Close()
		}
		for _, k := range drop {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range keep {
			if err := txn.Set(append(k, token...), nil); err != nil {
				return err
			}
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixLedger)
		it := txn.NewIterator(opts)
		var ledgers []*merge.Ledger
		for it.Rewind(); it.Valid(); it.Next() {
			l := new(merge.Ledger)
			if err := it.Item().Value(func(v []byte) error { return event.UnmarshalOwn(v, l) }); err != nil {
				it.Close()
				return err
			}
			if i, ok := slices.BinarySearch(l.Residents, resident); ok {
				l.Residents = slices.Delete(l.Residents, i, i+1)
				if j, dup := slices.BinarySearch(l.Residents, token); !dup {
					l.Residents = slices.Insert(l.Residents, j, token)
				}
				ledgers = append(ledgers, l)
			}
		}
		it.Close()
		for _, l := range ledgers {
			if err := storeLedger(txn, l); err != nil {
				return err
			}
		}
		return nil
	})
}
