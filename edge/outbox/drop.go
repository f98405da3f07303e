package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/kv"
)

// ErrNothingToDrop is returned by DropTelemetry when no unacked telemetry
// is stored.
var ErrNothingToDrop = errors.New("no unacked telemetry to drop")

// dropScanLimit bounds how many stored events one DropTelemetry looks
// through for telemetry: the scan runs inside the committer, so a backlog
// of governance events must not stall writes for long.
const dropScanLimit = 50_000

// Droppable reports whether events of kind k may be dropped to protect the
// disk. Only telemetry (readings) may; governance records (reports,
// check-ins, votes, ratings, access events) and alarms never are.
func Droppable(k event.Kind) bool { return k == event.KindReading }

// DropTelemetry deletes up to limit of the oldest unacked telemetry events
// and appends, in the same commit, a gap event naming how many it dropped
// and the first and last seq among them, so the hub knows what is missing
// and why. Seqs stay unique: the dropped ones are never reused, and the
// uplink's batch ranges cover the holes, which the hub counts as "does not
// exist". It returns the gap event, or ErrNothingToDrop when no unacked
// telemetry is stored; any other error means nothing was dropped.
func (l *Log) DropTelemetry(ctx context.Context, limit int, reason string) (event.Event, *event.Gap, error) {
	limit = max(limit, 1)
	l.pendMu.Lock() // the ack cursor stays put: what is dropped is unacked
	defer l.pendMu.Unlock()
	var (
		gap     *event.Gap
		dropped []uint64
	)
	ev, err := l.AppendFunc(ctx, event.KindGap, func(txn *badger.Txn) (event.Body, error) {
		gap, dropped = nil, nil
		acked, err := kv.GetU64(txn, []byte(keyAcked))
		if err != nil {
			return nil, err
		}
		// Only committed events: not this group's, not a failed commit's.
		l.mu.Lock()
		acked, last := max(acked, l.acked), l.last
		l.mu.Unlock()
		it := eventIterator(txn)
		scanned := 0
		for it.Seek(eventKey(acked + 1)); it.Valid() && len(dropped) < limit && scanned < dropScanLimit; it.Next() {
			scanned++
			seq := seqOf(it.Item().Key())
			if seq > last {
				break
			}
			e, _, err := storedEvent(it.Item())
			if err != nil {
				it.Close()
				return nil, fmt.Errorf("scan for telemetry: %w", err)
			}
			if Droppable(e.Kind) {
				dropped = append(dropped, seq)
			}
		}
		it.Close()
		if len(dropped) == 0 {
			return nil, ErrNothingToDrop
		}
		// Decide first, write after: a builder that fails writes nothing.
		for _, seq := range dropped {
			if err := txn.Delete(eventKey(seq)); err != nil {
				return nil, fmt.Errorf("drop seq %d: %w", seq, err)
			}
		}
		if err := txn.Set([]byte(keyHoles), kv.U64(1)); err != nil {
			return nil, fmt.Errorf("mark holes: %w", err)
		}
		gap = &event.Gap{Dropped: uint64(len(dropped)), FirstSeq: dropped[0], LastSeq: dropped[len(dropped)-1], Reason: reason}
		return gap, nil
	})
	if err != nil {
		return event.Event{}, nil, err
	}
	// The dropped events no longer wait; the gap event (counted by the
	// commit) does.
	l.mu.Lock()
	l.pending -= min(uint64(len(dropped)), l.pending)
	l.mu.Unlock()
	l.log.Warn("dropped unacked telemetry to protect the disk", "dropped", gap.Dropped,
		"first_seq", gap.FirstSeq, "last_seq", gap.LastSeq, "gap_seq", ev.Seq, "reason", reason)
	return ev, gap, nil
}

// ReclaimAcked deletes every event the hub has acked now, whatever the
// retention window and the hub's backup horizon: under disk pressure that
// insurance (refilling a hub restored from a backup) is worth less than
// the room, and acked events go before any unacked telemetry. Whole
// blocks of acked seqs go at once with their tables (see dropBlocks); the
// rest get deleted. Acked events no backup covered yet are counted and
// logged: a hub restored from its last backup will report them lost. It
// returns how many events it removed.
func (l *Log) ReclaimAcked(ctx context.Context) (int, error) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	l.mu.Lock()
	acked, horizon, set := l.acked, l.horizon, l.horizonSet
	l.mu.Unlock()
	var uncovered uint64
	if set && acked > horizon {
		var err error
		if uncovered, err = l.countRange(horizon, acked); err != nil {
			return 0, err
		}
	}
	dropped, err := l.dropBlocks(ctx, acked)
	if err != nil {
		return 0, err
	}
	n, err := l.deleteUpTo(acked)
	if err != nil {
		// Some may be gone: count them when a later round succeeds.
		return dropped + n, err
	}
	if uncovered > 0 {
		l.mu.Lock()
		l.ackedBeforeBackup += uncovered
		total := l.ackedBeforeBackup
		l.mu.Unlock()
		l.log.Warn("disk low: gave up acked events no backup of the hub covers yet", "events", uncovered,
			"first_seq", horizon+1, "last_seq", acked, "total", total)
	}
	return dropped + n, nil
}

// ReclaimExpired removes, by whole blocks, acked events older than the
// retention window, so that their space comes back at once; Prune deletes
// the rest one by one. The maintenance loop calls it before Prune.
func (l *Log) ReclaimExpired(ctx context.Context) (int, error) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	upto, err := l.expiredUpTo(hlc.FromTime(l.opts.Now().Add(-l.opts.Retention)))
	if err != nil || upto == 0 {
		return 0, err
	}
	return l.dropBlocks(ctx, upto)
}

// blockBits sizes the blocks dropBlocks works on: the 65,536 seqs whose
// keys share every byte but the last two. A multiple of 8; tests shrink it.
var blockBits uint64 = 16

func blockPrefix(b uint64) []byte { return kv.Key(prefixEvent, kv.U64(b << blockBits)[:8-blockBits/8]) }

// errBlocksDropped ends the builder that runs a drop: it writes no event.
var errBlocksDropped = errors.New("blocks dropped")

// dropBlocks removes every block of seqs that lies wholly at or below upto
// with Badger's DropPrefix, which flushes the memtable and deletes or
// rewrites the tables holding those keys, and returns how many events it
// removed. Plain deletes only add tombstones: their space comes back when
// compaction brings them down to the data, which an edge that has gone
// quiet after draining a backlog never triggers (found by the fault
// suite's long-outage test: the data dir did not shrink at all). upto must
// be acked; callers hold l.pendMu. DropPrefix refuses writes while it runs, so it runs in the
// committer, inside a builder that writes nothing: appends wait instead of
// failing.
func (l *Log) dropBlocks(ctx context.Context, upto uint64) (int, error) {
	first, err := l.firstSeq()
	if err != nil || first == 0 {
		return 0, err
	}
	var prefixes [][]byte
	for b := first >> blockBits; (b+1)<<blockBits-1 <= upto; b++ {
		prefixes = append(prefixes, blockPrefix(b))
	}
	if len(prefixes) == 0 {
		return 0, nil
	}
	before, err := l.countRange(0, upto)
	if err != nil {
		return 0, err
	}
	_, err = l.AppendFunc(ctx, event.KindGap, func(*badger.Txn) (event.Body, error) {
		if err := l.db.DropPrefix(prefixes...); err != nil {
			return nil, fmt.Errorf("drop acked blocks: %w", err)
		}
		return nil, errBlocksDropped
	})
	if !errors.Is(err, errBlocksDropped) {
		return 0, err
	}
	after, err := l.countRange(0, upto)
	if err != nil {
		return 0, err
	}
	l.log.Debug("dropped acked blocks", "blocks", len(prefixes), "events", before-after)
	return int(before - after), nil
}

// firstSeq is the lowest stored seq, or 0.
func (l *Log) firstSeq() (uint64, error) {
	var first uint64
	err := l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		if it.Rewind(); it.Valid() {
			first = seqOf(it.Item().Key())
		}
		return nil
	})
	return first, err
}

// expiredUpTo is a seq up to which every stored event is acked and older
// than cutoff, found a block at a time (seqs and HLCs rise together): the
// last seq before the first block boundary whose next event fails either
// test. 0 when none.
func (l *Log) expiredUpTo(cutoff hlc.Timestamp) (uint64, error) {
	l.mu.Lock()
	acked := l.expirable()
	l.mu.Unlock()
	first, err := l.firstSeq()
	if err != nil || first == 0 {
		return 0, err
	}
	var upto uint64
	err = l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		for b := first >> blockBits; ; b++ {
			it.Seek(eventKey((b + 1) << blockBits))
			if !it.Valid() {
				return nil
			}
			seq := seqOf(it.Item().Key())
			ev, _, err := storedEvent(it.Item())
			if err != nil {
				return err
			}
			if seq > acked || ev.HLC > cutoff {
				return nil
			}
			upto = seq - 1
			b = (seq >> blockBits) - 1 // skip blocks that hold nothing
		}
	})
	return upto, err
}

// deleteUpTo deletes every stored event with seq <= upto.
func (l *Log) deleteUpTo(upto uint64) (int, error) {
	var keys [][]byte
	err := l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if seqOf(it.Item().Key()) > upto {
				break
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan acked events: %w", err)
	}
	return l.deleteKeys(keys, "reclaim acked events")
}

// deleteKeys deletes keys in one write batch and returns how many; what
// names the operation in its errors.
func (l *Log) deleteKeys(keys [][]byte, what string) (int, error) {
	if err := kv.DeleteKeys(l.db, keys); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return len(keys), nil
}

// ErrInDoubt wraps the error of a failed attempt to settle the store after
// a failed commit: until one succeeds, appends are refused.
var ErrInDoubt = errors.New("the store is in doubt after an I/O error")

// keySettle is written and dropped at once to make DropPrefix flush the
// memtables when no ghost is left to drop.
const keySettle = "m/settle"

// settle makes the store's durable state agree with what the outbox
// answered after one of its writes failed. Badger applies a transaction to
// its memtable before it syncs the WAL, so a commit whose sync failed is
// readable (a ghost) though its writers were told it failed; worse, the
// kernel may have dropped the WAL pages that failed to sync, and a power
// cut then ends the WAL's replay at that hole, losing every later commit
// even though each of them synced (the fault suite's I/O-error test lost
// acked events so). settle drops the ghosts' keys with DropPrefix, which
// also flushes every memtable into a new, synced table: from then on
// nothing depends on the old WAL. Until that succeeds no append is taken.
// It runs in the committer.
func (l *Log) settle() error {
	// The committer and the journal's applier both settle.
	l.settleMu.Lock()
	defer l.settleMu.Unlock()
	l.mu.Lock()
	doubt, keys := l.doubt, l.unsettled
	l.mu.Unlock()
	if !doubt {
		return nil
	}
	// DropPrefix flushes only when one of its prefixes has live keys.
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keySettle), nil) }); err != nil {
		return fmt.Errorf("%w: %v", ErrInDoubt, err)
	}
	if err := l.db.DropPrefix(append(keys, []byte(keySettle))...); err != nil {
		return fmt.Errorf("%w: %v", ErrInDoubt, err)
	}
	l.log.Warn("store settled after a failed write: failed commits dropped, memtables flushed", "events", len(keys))
	l.mu.Lock()
	l.doubt, l.unsettled = false, nil
	l.mu.Unlock()
	return nil
}
