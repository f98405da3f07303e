package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/fxamacker/cbor/v2"

	"linli/shared/event"
	"linli/shared/kv"
	"linli/shared/wire"
)

// A large entity's long arrays (an activity's confirmed residents and
// waitlist, an access list's doors) are kept apart from the rest of its
// body, their entries in chunks of a few KB:
//
//	r/e/{entity}/{id}   a split: the change with the body's other fields,
//	                    and for each array kept apart its chunks in order
//	                    (id, entry count, first entry when short)
//	r/c/{gen:8}/{id:4}  one chunk: entries' CBOR bytes one after another
//	r/gen               the last gen given out
//
// So a delta that inserts one resident reads and rewrites the split and
// the one chunk the resident goes into, not the whole list, and a reader
// asking whether one resident is confirmed reads the split and one chunk.
// The whole body is put back together (Get, List) only for the readers
// that need the whole view.
//
// Each time an entity is stored whole as a split, its chunks get a new gen
// and are written before the transaction that stores the split (they can
// be more than a transaction holds); a crash in between leaves chunks of a
// gen above r/gen, which Open drops. Deltas edit chunks inside the
// transaction that applies them.
const (
	prefixChunk = "r/c/"
	keyGen      = "r/gen"
)

// Sizes of the split layout (variables for the tests, which make them
// small so that every entity of the property tests is split).
var (
	// splitAbove: a change whose encoding is larger is split, if it has an
	// array field worth keeping apart.
	splitAbove = 16 << 10
	// chunkBytes: chunks are filled up to this many bytes of entries; an
	// edit that makes one larger splits it in even halves.
	chunkBytes = 4 << 10
	// entryMax: an array with a longer entry (an access list's door of
	// 50,000 cards) is not kept apart: one entry must fit a transaction.
	entryMax = 4 << 10
	// firstMax: a chunk's first entry is kept in the split when no longer,
	// for searches in sorted arrays without reading the chunks.
	firstMax = 64
)

// split is what an entity key holds for an entity whose long arrays are
// kept apart.
type split struct {
	_      struct{}    `cbor:",toarray"`
	Change wire.Change // Body without the fields kept apart
	Gen    uint64
	Next   uint32 // the next chunk id of this gen
	Fields []field
}

type field struct {
	_   struct{} `cbor:",toarray"`
	Key int
	// Dir lists the chunks in order, packed (pack, unpack): decoding a
	// list of structs made reading a split cost more than the check-in
	// that reads it, and grow with the list.
	Dir    []byte
	Chunks []chunk `cbor:"-"`
}

// pack writes each field's Chunks into its Dir: per chunk its id and
// entry count (4 bytes each, big-endian), the first entry's length (one
// byte, 0 when not kept) and the first entry.
func (s *split) pack() {
	for i := range s.Fields {
		f := &s.Fields[i]
		dir := make([]byte, 0, len(f.Chunks)*(9+firstMax))
		for _, c := range f.Chunks {
			dir = binary.BigEndian.AppendUint32(dir, c.ID)
			dir = binary.BigEndian.AppendUint32(dir, c.N)
			dir = append(dir, byte(len(c.First)))
			dir = append(dir, c.First...)
		}
		f.Dir = dir
	}
}

// unpack reads each field's Chunks from its Dir.
func (s *split) unpack() error {
	for i := range s.Fields {
		f := &s.Fields[i]
		f.Chunks = f.Chunks[:0]
		for d := f.Dir; len(d) > 0; {
			if len(d) < 9 || len(d) < 9+int(d[8]) {
				return fmt.Errorf("field %d: chunk list cut short", f.Key)
			}
			c := chunk{ID: binary.BigEndian.Uint32(d), N: binary.BigEndian.Uint32(d[4:])}
			if n := int(d[8]); n > 0 {
				c.First = d[9 : 9+n : 9+n]
			}
			f.Chunks = append(f.Chunks, c)
			d = d[9+len(c.First):]
		}
	}
	return nil
}

// encode packs and encodes the split, as an entity key holds it.
func (s *split) encode() ([]byte, error) {
	s.pack()
	return event.Marshal(s)
}

type chunk struct {
	ID    uint32
	N     uint32 // entries
	First []byte // the first entry, when not longer than firstMax (at most 255)
}

func chunkKey(gen uint64, id uint32) []byte {
	return kv.Key(prefixChunk, kv.U64(gen), []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
}

// errNoFit: a delta does not fit the version held (an edit past the end).
var errNoFit = errors.New("delta does not fit the version held")

// stored is an entity key's value, one of three forms.
type stored struct {
	whole *wire.Change // a change, whole
	ptr   *pointer     // a large change in pieces (written before splits existed)
	split *split
}

// storedForm tells the forms apart by the value's first byte: a change is
// a CBOR map, a pointer an array of two, a split an array of four.
func storedForm(v []byte) (stored, error) {
	var s stored
	switch {
	case len(v) > 0 && v[0] == 0x84:
		s.split = new(split)
		if err := event.UnmarshalOwn(v, s.split); err != nil {
			return s, err
		}
		return s, s.split.unpack()
	case event.IsArray(v):
		s.ptr = new(pointer)
		return s, event.UnmarshalOwn(v, s.ptr)
	}
	s.whole = new(wire.Change)
	return s, event.UnmarshalOwn(v, s.whole)
}

// loadStored reads the value at an entity key; found is false when none.
func loadStored(txn *badger.Txn, key []byte) (s stored, found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	err = item.Value(func(v []byte) error {
		var err error
		s, err = storedForm(v)
		return err
	})
	if err != nil {
		return s, false, fmt.Errorf("entity %s: %w", key, err)
	}
	return s, true, nil
}

func readChunk(txn *badger.Txn, gen uint64, id uint32) ([]byte, error) {
	item, err := txn.Get(chunkKey(gen, id))
	if err != nil {
		return nil, fmt.Errorf("chunk %d/%d: %w", gen, id, err)
	}
	return item.ValueCopy(nil)
}

// splitBody divides a large change's body into the split and its chunks;
// ok is false when the body has no array worth keeping apart (or is not a
// map), and the change is then stored whole.
func splitBody(c wire.Change, gen uint64) (s *split, chunks map[uint32][]byte, ok bool, err error) {
	var m map[int]cbor.RawMessage
	if event.UnmarshalOwn(c.Body, &m) != nil {
		return nil, nil, false, nil
	}
	s = &split{Gen: gen}
	chunks = map[uint32][]byte{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if len(v) <= chunkBytes || !event.IsArray(v) {
			continue
		}
		_, items, err := wire.ArrayItems(v)
		if err != nil {
			continue
		}
		off, err := wire.Items(items)
		if err != nil || !shortEntries(off) {
			continue
		}
		f := field{Key: k}
		f.Chunks, err = s.fill(entriesOf(items, off), nil, func(id uint32, b []byte) error {
			chunks[id] = b
			return nil
		})
		if err != nil {
			return nil, nil, false, err
		}
		s.Fields = append(s.Fields, f)
		delete(m, k)
	}
	if len(s.Fields) == 0 {
		return nil, nil, false, nil
	}
	c.Body, err = event.Marshal(m)
	if err != nil {
		return nil, nil, false, err
	}
	s.Change = c
	return s, chunks, true, nil
}

func shortEntries(off []int) bool {
	for i := range len(off) - 1 {
		if off[i+1]-off[i] > entryMax {
			return false
		}
	}
	return true
}

func entriesOf(b []byte, off []int) [][]byte {
	out := make([][]byte, len(off)-1)
	for i := range out {
		out[i] = b[off[i]:off[i+1]]
	}
	return out
}

// fill cuts entries into chunks of even size up to chunkBytes (an edit
// that overfills a chunk makes two halves of it), reusing the ids in reuse
// first, and hands each to put; the ids of reuse past the chunks returned
// are the caller's to delete.
func (s *split) fill(entries [][]byte, reuse []uint32, put func(id uint32, b []byte) error) ([]chunk, error) {
	total := 0
	for _, e := range entries {
		total += len(e)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	n := (total + chunkBytes - 1) / chunkBytes
	target := (total + n - 1) / n
	var out []chunk
	for i := 0; i < len(entries); {
		var b []byte
		j := i
		for j < len(entries) && (j == i || len(b)+len(entries[j]) <= target) {
			b = append(b, entries[j]...)
			j++
		}
		var id uint32
		if len(reuse) > 0 {
			id, reuse = reuse[0], reuse[1:]
		} else {
			id = s.Next
			s.Next++
		}
		c := chunk{ID: id, N: uint32(j - i)}
		if len(entries[i]) <= firstMax {
			c.First = entries[i]
		}
		if err := put(id, b); err != nil {
			return nil, err
		}
		out = append(out, c)
		i = j
	}
	return out, nil
}

func (s *split) field(k int) int {
	for i, f := range s.Fields {
		if f.Key == k {
			return i
		}
	}
	return -1
}

// dropField deletes the chunks of field i and forgets it.
func (s *split) dropField(txn *badger.Txn, i int) error {
	for _, c := range s.Fields[i].Chunks {
		if err := txn.Delete(chunkKey(s.Gen, c.ID)); err != nil {
			return err
		}
	}
	s.Fields = slices.Delete(s.Fields, i, i+1)
	return nil
}

// dropChunks deletes all the split's chunks.
func (s *split) dropChunks(txn *badger.Txn) error {
	for len(s.Fields) > 0 {
		if err := s.dropField(txn, 0); err != nil {
			return err
		}
	}
	return nil
}

// patch applies delta change c to the split inside txn, writing only the
// chunks its list edits touch. It returns errNoFit for a delta that does
// not fit.
func (s *split) patch(txn *badger.Txn, c wire.Change) error {
	d := c.Delta
	rest := &wire.Delta{Lists: map[int]wire.ListEdit{}, Set: map[int]cbor.RawMessage{}}
	for k, v := range d.Set {
		if i := s.field(k); i >= 0 {
			if err := s.dropField(txn, i); err != nil {
				return err
			}
		}
		rest.Set[k] = v
	}
	for _, k := range d.Drop {
		if i := s.field(k); i >= 0 {
			if err := s.dropField(txn, i); err != nil {
				return err
			}
			continue
		}
		rest.Drop = append(rest.Drop, k)
	}
	for k, e := range d.Lists {
		i := s.field(k)
		if i < 0 {
			rest.Lists[k] = e
			continue
		}
		if err := s.edit(txn, i, e); err != nil {
			return err
		}
	}
	if len(rest.Set)+len(rest.Drop)+len(rest.Lists) > 0 {
		body, err := wire.Patch(s.Change.Body, rest)
		if err != nil {
			return fmt.Errorf("%w: %v", errNoFit, err)
		}
		s.Change.Body = body
	}
	if len(s.Change.Body) > splitAbove {
		// A field set whole, or an array kept inline that grew: keep it
		// apart now.
		if err := s.spill(txn); err != nil {
			return err
		}
	}
	body := s.Change.Body
	s.Change = c
	s.Change.Body, s.Change.Delta, s.Change.Base, s.Change.BaseHLC = body, nil, 0, 0
	return nil
}

// spill moves the long arrays of the split's own body into chunks.
func (s *split) spill(txn *badger.Txn) error {
	inner, chunks, ok, err := splitBody(wire.Change{Body: s.Change.Body}, s.Gen)
	if err != nil || !ok {
		return err
	}
	// Renumber the new chunks after this gen's ids in use.
	ids := map[uint32]uint32{}
	for _, f := range inner.Fields {
		for j := range f.Chunks {
			old := f.Chunks[j].ID
			ids[old] = s.Next
			f.Chunks[j].ID = s.Next
			s.Next++
		}
		s.Fields = append(s.Fields, f)
	}
	for old, b := range chunks {
		if err := txn.Set(chunkKey(s.Gen, ids[old]), b); err != nil {
			return err
		}
	}
	slices.SortFunc(s.Fields, func(a, b field) int { return a.Key - b.Key })
	s.Change.Body = inner.Change.Body
	return nil
}

// edit applies one list edit to field i: it reads the chunks the edit
// touches (the one holding entry At, and those of the entries it
// deletes), splices their entries and writes them back, cut again.
func (s *split) edit(txn *badger.Txn, i int, e wire.ListEdit) error {
	f := &s.Fields[i]
	total := 0
	for _, c := range f.Chunks {
		total += int(c.N)
	}
	at, end := int(e.At), int(e.At)+int(e.Del)
	if e.Elem != nil {
		end = at + 1
	}
	if at > total || end > total || (e.Elem != nil && at >= total) {
		return fmt.Errorf("%w: %d entries from %d of %d", errNoFit, end-at, at, total)
	}
	for _, v := range e.Ins {
		if off, err := wire.Items(v); err != nil || len(off) != 2 {
			return fmt.Errorf("%w: inserted entry is not one item", errNoFit)
		}
	}
	// Chunks [ci, cj) hold entries [base, ...) covering [at, end], or the
	// last chunk for an append.
	ci, base := 0, 0
	for ci < len(f.Chunks) && base+int(f.Chunks[ci].N) <= at && !(ci == len(f.Chunks)-1 && at == total) {
		base += int(f.Chunks[ci].N)
		ci++
	}
	cj, covered := ci, base
	for cj < len(f.Chunks) && (cj == ci || covered < end) {
		covered += int(f.Chunks[cj].N)
		cj++
	}
	var entries [][]byte
	var reuse []uint32
	for _, c := range f.Chunks[ci:cj] {
		b, err := readChunk(txn, s.Gen, c.ID)
		if err != nil {
			return err
		}
		off, err := wire.Items(b)
		if err != nil || len(off)-1 != int(c.N) {
			return fmt.Errorf("chunk %d/%d: %d entries, %d expected: %v", s.Gen, c.ID, len(off)-1, c.N, err)
		}
		entries = append(entries, entriesOf(b, off)...)
		reuse = append(reuse, c.ID)
	}
	lo, hi := at-base, end-base
	if e.Elem != nil {
		v, err := wire.Patch(entries[lo], e.Elem)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %v", errNoFit, at, err)
		}
		entries[lo] = v
	} else {
		ins := make([][]byte, len(e.Ins))
		for k, v := range e.Ins {
			ins[k] = v
		}
		entries = slices.Concat(entries[:lo], ins, entries[hi:])
	}
	cut, err := s.fill(entries, reuse, func(id uint32, b []byte) error { return txn.Set(chunkKey(s.Gen, id), b) })
	if err != nil {
		return err
	}
	for _, id := range reuse[min(len(cut), len(reuse)):] {
		if err := txn.Delete(chunkKey(s.Gen, id)); err != nil {
			return err
		}
	}
	f.Chunks = slices.Concat(f.Chunks[:ci:ci], cut, f.Chunks[cj:])
	return nil
}

// whole puts the split's body back together: the change as the hub sent
// it, byte for byte.
func (s *split) whole(txn *badger.Txn) (wire.Change, error) {
	c := s.Change
	var m map[int]cbor.RawMessage
	if err := event.UnmarshalOwn(c.Body, &m); err != nil {
		return c, fmt.Errorf("%s %s: body: %w", c.Entity, c.ID, err)
	}
	if m == nil {
		m = map[int]cbor.RawMessage{}
	}
	for _, f := range s.Fields {
		n := uint64(0)
		for _, ch := range f.Chunks {
			n += uint64(ch.N)
		}
		arr := wire.AppendArrayHead(nil, n)
		for _, ch := range f.Chunks {
			b, err := readChunk(txn, s.Gen, ch.ID)
			if err != nil {
				return c, fmt.Errorf("%s %s: %w", c.Entity, c.ID, err)
			}
			arr = append(arr, b...)
		}
		m[f.Key] = arr
	}
	body, err := event.Marshal(m)
	c.Body = body
	return c, err
}

// search looks for an entry in field k of a sorted array, cmp telling
// where an entry lies against the one sought (<0: before it).
func (s *split) search(txn *badger.Txn, k int, cmp func(entry []byte) int) (bool, error) {
	i := s.field(k)
	if i < 0 {
		return searchBody(s.Change.Body, k, cmp)
	}
	cs := s.Fields[i].Chunks
	// The last chunk whose first entry is not after the one sought.
	var firstErr error
	first := func(c chunk) []byte {
		if c.First != nil || firstErr != nil {
			return c.First
		}
		b, err := readChunk(txn, s.Gen, c.ID)
		if err != nil {
			firstErr = err
			return nil
		}
		off, err := wire.Items(b)
		if err != nil || len(off) < 2 {
			firstErr = fmt.Errorf("chunk %d/%d: %v", s.Gen, c.ID, err)
			return nil
		}
		return b[:off[1]]
	}
	j, _ := slices.BinarySearchFunc(cs, 0, func(c chunk, _ int) int {
		if cmp(first(c)) <= 0 {
			return -1
		}
		return 1
	})
	if firstErr != nil {
		return false, firstErr
	}
	if j == 0 {
		return false, nil
	}
	b, err := readChunk(txn, s.Gen, cs[j-1].ID)
	if err != nil {
		return false, err
	}
	return searchItems(b, cmp)
}

// searchBody searches field k of a body kept whole.
func searchBody(body []byte, k int, cmp func(entry []byte) int) (bool, error) {
	var m map[int]cbor.RawMessage
	if err := event.UnmarshalOwn(body, &m); err != nil {
		return false, err
	}
	v, ok := m[k]
	if !ok || !event.IsArray(v) { // absent, or null (a nil list)
		return false, nil
	}
	_, items, err := wire.ArrayItems(v)
	if err != nil {
		return false, err
	}
	return searchItems(items, cmp)
}

func searchItems(b []byte, cmp func(entry []byte) int) (bool, error) {
	off, err := wire.Items(b)
	if err != nil {
		return false, err
	}
	n := len(off) - 1
	lo, hi := 0, n
	for lo < hi {
		mid := (lo + hi) / 2
		switch c := cmp(b[off[mid]:off[mid+1]]); {
		case c == 0:
			return true, nil
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return false, nil
}

// TextCmp compares a CBOR text string entry with s, for Search in an
// array of strings sorted as Go sorts them. It reads the string's head
// itself: a search compares a few dozen entries, and decoding each was
// most of its time. An entry that is not a text string sorts first.
func TextCmp(s string) func(entry []byte) int {
	return func(entry []byte) int {
		if len(entry) == 0 || entry[0]>>5 != 3 {
			return -1
		}
		n, info := 1, int(entry[0]&31)
		switch {
		case info < 24:
		case info == 24 && len(entry) >= 2:
			n, info = 2, int(entry[1])
		case info == 25 && len(entry) >= 3:
			n, info = 3, int(entry[1])<<8|int(entry[2])
		default: // longer than any resident id: decode it
			var got string
			if err := event.UnmarshalOwn(entry, &got); err != nil {
				return -1
			}
			return strings.Compare(got, s)
		}
		if n+info > len(entry) {
			return -1
		}
		return strings.Compare(string(entry[n:n+info]), s)
	}
}
