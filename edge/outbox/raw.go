package outbox

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// ReadRaw is Read for the uplink's hot path: it appends the stored
// encodings of up to maxEvents events with seq > after to dst, unparsed,
// and returns them with their count and the last seq. Each is the
// deterministic CBOR of the event without its device — byte for byte what
// encoding the event inside a batch gives — so a batch is built by
// concatenation, without decoding and encoding every event again.
// It stops early once maxBytes are reached (at least one event is returned
// when any exists), and like Read it never returns what no commit reported
// durable.
func (l *Log) ReadRaw(after uint64, maxEvents, maxBytes int, dst []byte) (raw []byte, n int, last uint64, err error) {
	durable := l.durable()
	raw = dst
	err = l.db.View(func(txn *badger.Txn) error {
		it := eventIterator(txn)
		defer it.Close()
		start := len(raw)
		for it.Seek(eventKey(after + 1)); it.Valid() && n < maxEvents; it.Next() {
			seq := seqOf(it.Item().Key())
			if seq > durable {
				break
			}
			// Values die with the transaction: copy them out.
			if err := it.Item().Value(func(v []byte) error { raw = append(raw, v...); return nil }); err != nil {
				return fmt.Errorf("read seq %d: %w", seq, err)
			}
			n++
			last = seq
			if len(raw)-start >= maxBytes {
				break
			}
		}
		return nil
	})
	return raw, n, last, err
}
