package outbox

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// Rebase makes the next event's seq base+1 when the log has not numbered
// that far and holds nothing unacked: a device that replaces another under
// the same id numbers above every event its predecessor may still deliver.
// It reports whether it moved the numbering. With events still waiting it
// does nothing: renumbering them would change what was answered. Call it
// before the log takes appends (a commit in flight would number from the
// old base).
func (l *Log) Rebase(base uint64) (bool, error) {
	// The applier writes keyLast: none of its groups may come after this.
	if err := l.waitApplied(); err != nil {
		return false, fmt.Errorf("rebase outbox to %d: %w", base, err)
	}
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	if l.last >= base || l.acked != l.last {
		return false, nil
	}
	err := l.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(keyLast), kv.U64(base)); err != nil {
			return err
		}
		if err := txn.Set([]byte(keyHoles), kv.U64(0)); err != nil {
			return err
		}
		return txn.Set([]byte(keyAcked), kv.U64(base))
	})
	if err != nil {
		return false, fmt.Errorf("rebase outbox to %d: %w", base, err)
	}
	// Nothing is waiting for the applier (waitApplied above), so the
	// numbering's jump is applied too: a reader or a write built on
	// stored state must not wait for seqs below the base that no group
	// will ever bring.
	l.last, l.acked, l.pending, l.applied = base, base, 0, base
	l.applyCond.Broadcast()
	return true, nil
}
