package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/edge/journal"
	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// applyGroup is a journaled group commit waiting to go into Badger.
type applyGroup struct {
	first, last uint64
	events      [][]byte // stored encodings, seqs first..last
	size        int      // their bytes
	hlc         hlc.Timestamp
}

// Bounds of one of the applier's Badger transactions, well under the
// small profile's largest (614 KiB, about 6,500 entries): a group holds
// up to maxGroupBytes and the applier takes whole groups.
const (
	maxApplyBytes  = 384 << 10
	maxApplyEvents = 2048
)

// maxQueuedBytes bounds the journaled events held in memory for the
// applier. Past it a group commit waits for the applier (Badger stalled
// on compaction: writers slow down with it), or, while the applier is
// failing, is refused: the store is in trouble and memory must not grow.
const maxQueuedBytes = 4 << 20

// openJournal opens the journal and puts into Badger every journaled event
// Badger does not hold yet, before the outbox reads its state.
func (l *Log) openJournal() error {
	var last, floor uint64
	err := l.db.View(func(txn *badger.Txn) error {
		var err error
		if last, err = kv.GetU64(txn, []byte(keyLast)); err != nil {
			return err
		}
		floor, err = kv.GetU64(txn, []byte(keyHLC))
		return err
	})
	if err != nil {
		return fmt.Errorf("open outbox journal: %w", err)
	}
	// Only the events above Badger's last seq are kept while the journal
	// is read: normally the last few groups, however long the journal.
	var evs []journaled
	jr, err := journal.Open(journal.Options{Dir: l.opts.Journal, UnsafeNoSync: l.opts.UnsafeNoJournalSync,
		Logger: l.log.With("component", "journal")}, func(r journal.Record) error {
		// A record that numbers from at or below what came before it
		// reuses the seqs of a group whose journal write failed (its
		// writers got an error): the later record is the one answered.
		i := sort.Search(len(evs), func(i int) bool { return evs[i].seq >= r.First })
		evs = evs[:i]
		for k, data := range r.Events {
			if seq := r.First + uint64(k); seq > last {
				evs = append(evs, journaled{seq, slices.Clone(data)})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("open outbox journal: %w", err)
	}
	if err := l.replay(evs, floor); err != nil {
		_ = jr.Close()
		return fmt.Errorf("replay outbox journal: %w", err)
	}
	l.jr = jr
	return nil
}

type journaled struct {
	seq  uint64
	data []byte
}

// replay writes journaled events (above Badger's last seq, in seq order)
// into Badger, in synced transactions, each with the last seq and the
// clock's floor. It is idempotent: a crash during it leaves the journal as
// it was, and the next start writes again what Badger did not get.
func (l *Log) replay(evs []journaled, floor uint64) error {
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) && n < maxApplyEvents && size < maxApplyBytes {
			size += len(evs[n].data)
			n++
		}
		chunk := evs[:n]
		err := l.db.Update(func(txn *badger.Txn) error {
			for _, e := range chunk {
				ev, err := event.DecodeEvent(e.data)
				if err != nil {
					return fmt.Errorf("seq %d: %w", e.seq, err)
				}
				if ev.Seq != e.seq {
					return fmt.Errorf("journal record says seq %d, its event %d", e.seq, ev.Seq)
				}
				floor = max(floor, uint64(ev.HLC))
				if err := txn.Set(eventKey(e.seq), e.data); err != nil {
					return err
				}
			}
			if err := txn.Set([]byte(keyLast), kv.U64(chunk[len(chunk)-1].seq)); err != nil {
				return err
			}
			return txn.Set([]byte(keyHLC), kv.U64(floor))
		})
		if err != nil {
			return err
		}
		l.log.Info("outbox journal replayed into the store", "from_seq", chunk[0].seq, "to_seq", chunk[len(chunk)-1].seq)
		evs = evs[n:]
	}
	return nil
}

// noteCommit adds a synced Badger commit's time to the average that
// decides whether groups go through the journal.
func (l *Log) noteCommit(took time.Duration) {
	l.mu.Lock()
	l.commitTime = (3*l.commitTime + took) / 4
	l.mu.Unlock()
}

// journalPays says whether the next group goes through the journal: while
// Badger's commits take more than JournalAbove on average, until they
// take less than half of it (the two paths' own costs do not make it
// flap).
func (l *Log) journalPays() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	above := l.opts.JournalAbove
	switch {
	case above < 0 || l.commitTime > above:
		l.viaJournal = true
	case l.commitTime < above/2:
		l.viaJournal = false
	}
	return l.viaJournal
}

func hasBuilder(group []*appendReq) bool {
	for _, r := range group {
		if r.build != nil {
			return true
		}
	}
	return false
}

// commitJournal numbers the group's events, appends them to the journal as
// one synced record and answers: the one sync a writer waits for. The
// applier puts them into Badger afterwards. A failed journal write numbers
// nothing (the next group reuses the seqs) and fails every append of the
// group.
func (l *Log) commitJournal(group []*appendReq, next uint64, queued int) int {
	fail := func(err error) int {
		err = fmt.Errorf("append event: %w", err)
		l.log.Error("outbox commit failed", "events", len(group), "err", err)
		for _, r := range group {
			r.ev, r.err = event.Event{}, err
			close(r.done)
		}
		return queued
	}
	events := make([][]byte, 0, len(group))
	seq := next
	for _, r := range group {
		r.ev = event.Event{Device: l.opts.Device, Seq: seq, HLC: l.clock.Now(), Kind: r.kind, Body: r.body}
		stored := r.ev
		stored.Device = "" // implied by the store
		data, err := stored.Encode()
		if err != nil {
			return fail(err)
		}
		events = append(events, data)
		seq++
	}
	last := seq - 1
	size := 0
	for _, e := range events {
		size += len(e)
	}
	l.mu.Lock()
	for l.queued > maxQueuedBytes && l.applyErr == nil {
		l.applyCond.Wait()
	}
	over, applyErr := l.queued > maxQueuedBytes, l.applyErr
	l.mu.Unlock()
	if over {
		return fail(fmt.Errorf("%w: %v", ErrNotApplied, applyErr))
	}
	if err := l.jr.Append(journal.Record{First: next, Last: last, Events: events}); err != nil {
		return fail(err)
	}
	queued = len(l.reqs) // after the fsync: whoever waited through it
	l.mu.Lock()
	l.last = last
	l.pending += uint64(len(group))
	l.commits++
	l.toApply = append(l.toApply, applyGroup{first: next, last: last, events: events, size: size, hlc: l.clock.Last()})
	l.queued += size
	l.mu.Unlock()
	l.wakeApplier()
	for _, r := range group {
		close(r.done)
	}
	return queued
}

func (l *Log) wakeApplier() {
	select {
	case l.applyWake <- struct{}{}:
	default:
	}
}

// applyLoop puts journaled groups into Badger, as many per synced
// transaction as have queued up while the last one synced: Badger's two
// syncs per commit are then shared by every group journaled meanwhile. A
// failed transaction leaves the groups queued (and in the journal); the
// store is settled (see settle: a failed sync may have left a hole in
// Badger's WAL) before they are tried again. It returns once the
// committer has stopped and everything is applied, or at Close when the
// store keeps failing (the journal keeps the rest for the next start).
func (l *Log) applyLoop(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		l.mu.Lock()
		groups, done := l.nextApply(), l.committerDone
		l.mu.Unlock()
		if len(groups) == 0 {
			if done {
				return
			}
			<-l.applyWake
			continue
		}
		err := l.apply(groups)
		if err == nil {
			backoff = 50 * time.Millisecond
			continue
		}
		l.log.Error("outbox: journaled events not yet in the store; retrying", "from_seq", groups[0].first, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			l.log.Warn("outbox closed with journaled events not in the store; the next start replays them", "from_seq", groups[0].first)
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// nextApply is the queued groups the next transaction takes. Callers hold
// l.mu.
func (l *Log) nextApply() []applyGroup {
	n, events, size := 0, 0, 0
	for n < len(l.toApply) {
		g := l.toApply[n]
		gs := g.size
		if n > 0 && (events+len(g.events) > maxApplyEvents || size+gs > maxApplyBytes) {
			break
		}
		n, events, size = n+1, events+len(g.events), size+gs
	}
	return l.toApply[:n:n]
}

// apply writes groups into Badger in one synced transaction.
func (l *Log) apply(groups []applyGroup) error {
	if err := l.settle(); err != nil {
		l.failApply(err)
		return err
	}
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	var err error
	for _, g := range groups {
		for k, data := range g.events {
			if err = txn.Set(eventKey(g.first+uint64(k)), data); err != nil {
				break
			}
		}
	}
	end := groups[len(groups)-1]
	if err == nil {
		err = txn.Set([]byte(keyLast), kv.U64(end.last))
	}
	if err == nil {
		err = txn.Set([]byte(keyHLC), kv.U64(uint64(end.hlc)))
	}
	if err == nil {
		start := time.Now()
		err = txn.Commit()
		if err == nil {
			l.noteCommit(time.Since(start))
		}
	}
	if err != nil {
		err = fmt.Errorf("apply journaled events %d..%d: %w", groups[0].first, end.last, err)
		l.mu.Lock()
		// What Badger applied to its memtable are the same events the
		// journal holds, so no key is a ghost; but the WAL behind them
		// may have a hole, and no later commit may count on it.
		l.doubt = true
		l.mu.Unlock()
		l.failApply(err)
		return err
	}
	l.mu.Lock()
	l.toApply = l.toApply[len(groups):]
	for _, g := range groups {
		l.queued -= g.size
	}
	clear(groups) // the applied events' memory goes with the next append's growth
	l.applied, l.applyErr = end.last, nil
	l.applyCond.Broadcast()
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	l.releaseJournal()
	return nil
}

func (l *Log) failApply(err error) {
	l.mu.Lock()
	l.applyErr = err
	l.applyCond.Broadcast()
	l.mu.Unlock()
}

// ErrNotApplied wraps the applier's error while journaled events wait for
// a store that fails: what must see them all (a builder's decision, a
// rebase, a rewrite) is refused until they are in.
var ErrNotApplied = errors.New("journaled events are not yet in the store")

// waitApplied waits until every journaled group is in Badger.
func (l *Log) waitApplied() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.applied < l.last {
		if l.applyErr != nil {
			return fmt.Errorf("%w: %v", ErrNotApplied, l.applyErr)
		}
		l.applyCond.Wait()
	}
	return nil
}

// durable is the highest seq a reader may read from Badger: every event
// answered before the call once the applier has put it there (a reader
// sees its own writes), or what is there while the applier fails.
func (l *Log) durable() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.last
	for l.applied < target && l.applyErr == nil {
		l.applyCond.Wait()
	}
	return l.applied
}

// releaseJournal deletes the journal's segments whose events are in
// Badger and acked by the hub. Badger's synced commit alone would do on
// a sound disk; the hub's ack also covers a Badger WAL cut short by
// another writer's failed sync, which the outbox would not know of.
func (l *Log) releaseJournal() {
	if l.jr == nil {
		return
	}
	l.mu.Lock()
	upto := min(l.applied, l.acked)
	l.mu.Unlock()
	if err := l.jr.Release(upto); err != nil {
		l.log.Warn("release outbox journal", "err", err)
	}
}

func (l *Log) closeJournal() error {
	if l.jr == nil {
		return nil
	}
	return l.jr.Close()
}
