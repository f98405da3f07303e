package outbox

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// keyHorizon holds the hub's backup horizon as its last ack said; absent
// while the hub takes no backups (or never said).
const keyHorizon = "m/horizon"

// SetHorizon records the hub's backup horizon: the highest seq of this
// device that a completed backup of the hub covers. Acked events above it
// are kept whatever the retention says, since a hub restored from that
// backup needs them again; ok false means the hub takes no backups and
// retention alone decides. It writes only when the horizon changes (the
// hub lowers it after a restore, so it is taken as it comes).
func (l *Log) SetHorizon(seq uint64, ok bool) error {
	l.mu.Lock()
	same := l.horizonSet == ok && (!ok || l.horizon == seq)
	l.mu.Unlock()
	if same {
		return nil
	}
	err := l.db.Update(func(txn *badger.Txn) error {
		if !ok {
			return txn.Delete([]byte(keyHorizon))
		}
		return txn.Set([]byte(keyHorizon), kv.U64(seq))
	})
	if err != nil {
		return fmt.Errorf("store backup horizon: %w", err)
	}
	l.mu.Lock()
	l.horizon, l.horizonSet = seq, ok
	l.mu.Unlock()
	return nil
}

// loadHorizon reads the stored horizon at Open.
func loadHorizon(txn *badger.Txn) (seq uint64, ok bool, err error) {
	item, err := txn.Get([]byte(keyHorizon))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	err = item.Value(func(v []byte) error { seq = kv.ParseU64(v); return nil })
	return seq, err == nil, err
}

// Horizon is the hub's backup horizon as last told; ok false when the hub
// takes no backups.
func (l *Log) Horizon() (seq uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.horizon, l.horizonSet
}

// expirable is the highest seq retention may delete: acked, and covered
// by the hub's backups when it takes any. Callers hold l.mu.
func (l *Log) expirable() uint64 {
	if l.horizonSet {
		return min(l.acked, l.horizon)
	}
	return l.acked
}

// FirstHeld is the oldest seq still stored, or the next seq when none is:
// the hub learns from it (in the hello) which seqs it lacks are gone.
func (l *Log) FirstHeld() (uint64, error) {
	// Journaled events not yet in Badger are held too: what Badger holds
	// is read once they are (or the applier is failing, and then the
	// journal holds everything above applied).
	applied := l.durable()
	first, err := l.firstSeq()
	if err != nil {
		return 0, fmt.Errorf("oldest stored seq: %w", err)
	}
	if first == 0 || first > applied {
		return applied + 1, nil
	}
	return first, nil
}
