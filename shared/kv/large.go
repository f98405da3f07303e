package kv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// PieceSize bounds every value PutLarge writes: far under SmallInline, so
// a value of any size stays in the LSM tree and its synced WAL, and under
// the small profile's largest transaction.
const PieceSize = 128 << 10

// Key layout of a large value under key:
//
//	key                          the value itself, when it fits one piece
//	key/pieces                   gen:8 count:4 of the pieces in force
//	key/piece/{gen:8}/{i:4}      the pieces, in order
const (
	manifestSuffix = "/pieces"
	pieceInfix     = "/piece/"
)

func manifestKey(key []byte) []byte { return Key(string(key), []byte(manifestSuffix)) }

func piecePrefix(key []byte, gen uint64) []byte {
	return Key(string(key)+pieceInfix, U64(gen))
}

func pieceKey(key []byte, gen uint64, i uint32) []byte {
	return binary.BigEndian.AppendUint32(piecePrefix(key, gen), i)
}

// manifest reads which pieces hold key's value; ok is false when key's
// value is kept whole (or there is none).
func manifest(txn *badger.Txn, key []byte) (gen uint64, n uint32, ok bool, err error) {
	item, err := txn.Get(manifestKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 12 {
			return fmt.Errorf("%s: manifest of %d bytes, want 12", manifestKey(key), len(v))
		}
		gen, n = binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:])
		return nil
	})
	return gen, n, err == nil, err
}

// GetLarge reads a value PutLarge stored (or one a plain Set stored under
// key, which PutLarge's layout keeps readable).
func GetLarge(txn *badger.Txn, key []byte) (val []byte, found bool, err error) {
	gen, n, pieced, err := manifest(txn, key)
	if err != nil {
		return nil, false, err
	}
	if !pieced {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		val, err = item.ValueCopy(nil)
		return val, err == nil, err
	}
	for i := range n {
		item, err := txn.Get(pieceKey(key, gen, i))
		if err != nil {
			return nil, false, fmt.Errorf("%s: piece %d of %d: %w", key, i+1, n, err)
		}
		if err := item.Value(func(v []byte) error { val = append(val, v...); return nil }); err != nil {
			return nil, false, err
		}
	}
	return val, true, nil
}

// PutLarge stores val under key whatever its size. A value larger than
// PieceSize is written in pieces, in as many synced transactions as that
// takes, before one transaction puts them in force; a crash part-way
// leaves the previous value in force, and the next PutLarge removes the
// pieces it left behind.
func PutLarge(db *badger.DB, key, val []byte) error {
	var old uint64
	if err := db.View(func(txn *badger.Txn) error {
		var err error
		old, _, _, err = manifest(txn, key)
		return err
	}); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	if len(val) <= PieceSize {
		if err := db.Update(func(txn *badger.Txn) error {
			if err := txn.Delete(manifestKey(key)); err != nil {
				return err
			}
			return txn.Set(key, val)
		}); err != nil {
			return fmt.Errorf("store %s: %w", key, err)
		}
	} else {
		gen := old + 1
		wb := db.NewWriteBatch()
		defer wb.Cancel()
		n := uint32(0)
		for off := 0; off < len(val); off += PieceSize {
			if err := wb.Set(pieceKey(key, gen, n), val[off:min(off+PieceSize, len(val))]); err != nil {
				return fmt.Errorf("store %s: piece %d: %w", key, n, err)
			}
			n++
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("store %s: pieces: %w", key, err)
		}
		m := binary.BigEndian.AppendUint32(U64(gen), n)
		if err := db.Update(func(txn *badger.Txn) error {
			if err := txn.Delete(key); err != nil {
				return err
			}
			return txn.Set(manifestKey(key), m)
		}); err != nil {
			return fmt.Errorf("store %s: %w", key, err)
		}
	}
	// Pieces of every other generation: the value replaced, or an attempt a
	// crash cut short (which may share a generation number with this one
	// only if it never came into force, and then this write overwrote the
	// pieces it reused and drops the rest here).
	if err := dropPieces(db, key); err != nil {
		return fmt.Errorf("store %s: drop old pieces: %w", key, err)
	}
	return nil
}

// dropPieces deletes key's pieces that its manifest does not name: all of
// them when the value is kept whole, else those of other generations and
// those past the count in force.
func dropPieces(db *badger.DB, key []byte) error {
	var drop [][]byte
	err := db.View(func(txn *badger.Txn) error {
		gen, n, pieced, err := manifest(txn, key)
		if err != nil {
			return err
		}
		base := len(key) + len(pieceInfix)
		for _, k := range prefixKeys(txn, Key(string(key), []byte(pieceInfix))) {
			if len(k) != base+12 {
				continue // another key that only shares the prefix
			}
			g, i := binary.BigEndian.Uint64(k[base:]), binary.BigEndian.Uint32(k[base+8:])
			if !pieced || g != gen || i >= n {
				drop = append(drop, k)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return DeleteKeys(db, drop)
}
