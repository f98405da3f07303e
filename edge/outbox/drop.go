package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/event"
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
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixEvent)
		it := txn.NewIterator(opts)
		scanned := 0
		for it.Seek(kv.Key(prefixEvent, kv.U64(acked+1))); it.Valid() && len(dropped) < limit && scanned < dropScanLimit; it.Next() {
			scanned++
			seq := kv.ParseU64(it.Item().Key()[len(prefixEvent):])
			if seq > last {
				break
			}
			var kind event.Kind
			if err := it.Item().Value(func(v []byte) error {
				e, err := event.DecodeEvent(v)
				kind = e.Kind
				return err
			}); err != nil {
				it.Close()
				return nil, fmt.Errorf("scan for telemetry: %w", err)
			}
			if Droppable(kind) {
				dropped = append(dropped, seq)
			}
		}
		it.Close()
		if len(dropped) == 0 {
			return nil, ErrNothingToDrop
		}
		// Decide first, write after: a builder that fails writes nothing.
		for _, seq := range dropped {
			if err := txn.Delete(kv.Key(prefixEvent, kv.U64(seq))); err != nil {
				return nil, fmt.Errorf("drop seq %d: %w", seq, err)
			}
		}
		gap = &event.Gap{Dropped: uint64(len(dropped)), FirstSeq: dropped[0], LastSeq: dropped[len(dropped)-1], Reason: reason}
		return gap, nil
	})
	if err != nil {
		return event.Event{}, nil, err
	}
	// The dropped events no longer wait; the gap event (counted by the
	// commit) does. Count only what is still above the ack cursor: an ack
	// that raced past them has already discounted them.
	l.mu.Lock()
	var n uint64
	for _, seq := range dropped {
		if seq > l.acked {
			n++
		}
	}
	l.pending -= min(n, l.pending)
	l.mu.Unlock()
	l.log.Warn("dropped unacked telemetry to protect the disk", "dropped", gap.Dropped,
		"first_seq", gap.FirstSeq, "last_seq", gap.LastSeq, "gap_seq", ev.Seq, "reason", reason)
	return ev, gap, nil
}

// ReclaimAcked deletes every event the hub has acked now, whatever the
// retention window: under disk pressure the window's insurance (refilling
// a hub restored from an old backup) is worth less than the room. It
// returns how many events it deleted.
func (l *Log) ReclaimAcked() (int, error) {
	l.mu.Lock()
	acked := l.acked
	l.mu.Unlock()
	var keys [][]byte
	err := l.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixEvent)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if kv.ParseU64(it.Item().Key()[len(prefixEvent):]) > acked {
				break
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan acked events: %w", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return 0, fmt.Errorf("reclaim acked events: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("reclaim acked events: %w", err)
	}
	return len(keys), nil
}
