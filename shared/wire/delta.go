package wire

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/fxamacker/cbor/v2"

	"linli/shared/event"
)

// Delta is the difference between two versions of an entity's body, both
// CBOR maps with integer keys (every view the hub sends down is one). It
// is structural, not per entity kind: a field whose value changed is sent
// again, unless both versions of it are arrays, which are edited in place
// (the entries added or removed). So one resident signing up sends that
// resident's id and the counts that moved, and one card added to a door
// of a 50,000-card list sends that card's hash.
//
// Applying a Delta to the body it was made from gives the new body byte
// for byte (the encoding is deterministic: event.Marshal).
type Delta struct {
	Set   map[int]cbor.RawMessage `cbor:"1,keyasint,omitempty"` // fields with a new value
	Drop  []int                   `cbor:"2,keyasint,omitempty"` // fields gone (omitempty fields now empty)
	Lists map[int]ListEdit        `cbor:"3,keyasint,omitempty"` // array fields edited
}

// ListEdit edits an array: the Del entries from index At are replaced by
// Ins; or, with Elem, the entry at At (a map) is patched by Elem.
type ListEdit struct {
	At   uint32            `cbor:"1,keyasint,omitempty"`
	Del  uint32            `cbor:"2,keyasint,omitempty"`
	Ins  []cbor.RawMessage `cbor:"3,keyasint,omitempty"`
	Elem *Delta            `cbor:"4,keyasint,omitempty"`
}

// ErrNoDelta: the bodies cannot be diffed (not integer-keyed maps); send
// the snapshot.
var ErrNoDelta = errors.New("no delta")

// Diff computes the delta from body old to body new.
func Diff(old, new []byte) (*Delta, error) {
	var om, nm map[int]cbor.RawMessage
	if err := event.UnmarshalOwn(old, &om); err != nil {
		return nil, fmt.Errorf("%w: old body: %v", ErrNoDelta, err)
	}
	if err := event.UnmarshalOwn(new, &nm); err != nil {
		return nil, fmt.Errorf("%w: new body: %v", ErrNoDelta, err)
	}
	return diffMaps(om, nm), nil
}

func diffMaps(om, nm map[int]cbor.RawMessage) *Delta {
	d := &Delta{}
	for _, k := range slices.Sorted(maps.Keys(nm)) {
		nv := nm[k]
		ov, had := om[k]
		if had && bytes.Equal(ov, nv) {
			continue
		}
		if had && event.IsArray(ov) && event.IsArray(nv) {
			if e, ok := diffLists(ov, nv); ok {
				if d.Lists == nil {
					d.Lists = map[int]ListEdit{}
				}
				d.Lists[k] = e
				continue
			}
		}
		if d.Set == nil {
			d.Set = map[int]cbor.RawMessage{}
		}
		d.Set[k] = nv
	}
	for _, k := range slices.Sorted(maps.Keys(om)) {
		if _, ok := nm[k]; !ok {
			d.Drop = append(d.Drop, k)
		}
	}
	return d
}

// diffLists edits old into new by their common prefix and suffix: the
// middle is replaced, or, when one map replaces one map (a door whose
// cards changed), patched.
func diffLists(old, new []byte) (ListEdit, bool) {
	oo, err1 := entries(old)
	no, err2 := entries(new)
	if err1 != nil || err2 != nil {
		return ListEdit{}, false
	}
	on, nn := len(oo)-1, len(no)-1
	oe := func(i int) []byte { return old[oo[i]:oo[i+1]] }
	ne := func(i int) []byte { return new[no[i]:no[i+1]] }
	p := 0
	for p < on && p < nn && bytes.Equal(oe(p), ne(p)) {
		p++
	}
	s := 0
	for s < on-p && s < nn-p && bytes.Equal(oe(on-1-s), ne(nn-1-s)) {
		s++
	}
	e := ListEdit{At: uint32(p)}
	if on-s-p == 1 && nn-s-p == 1 && isMap(oe(p)) && isMap(ne(p)) {
		if sub, err := Diff(oe(p), ne(p)); err == nil {
			e.Elem = sub
			return e, true
		}
	}
	e.Del = uint32(on - s - p)
	for i := p; i < nn-s; i++ {
		e.Ins = append(e.Ins, ne(i))
	}
	return e, true
}

func isMap(v []byte) bool { return len(v) > 0 && v[0]>>5 == 5 }

// Patch applies d to body and returns the new body.
func Patch(body []byte, d *Delta) ([]byte, error) {
	var m map[int]cbor.RawMessage
	if err := event.UnmarshalOwn(body, &m); err != nil {
		return nil, fmt.Errorf("patch: body: %w", err)
	}
	if m == nil {
		m = map[int]cbor.RawMessage{}
	}
	for k, v := range d.Set {
		m[k] = v
	}
	for _, k := range d.Drop {
		delete(m, k)
	}
	for k, e := range d.Lists {
		v, err := patchList(m[k], e)
		if err != nil {
			return nil, fmt.Errorf("patch: field %d: %w", k, err)
		}
		m[k] = v
	}
	return event.Marshal(m)
}

// patchList applies one edit to arr, a CBOR array, as bytes.
func patchList(arr []byte, e ListEdit) ([]byte, error) {
	off, err := entries(arr)
	if err != nil {
		return nil, err
	}
	n, at := len(off)-1, int(e.At)
	if e.Elem != nil {
		if at >= n {
			return nil, fmt.Errorf("entry %d of %d", at, n)
		}
		v, err := Patch(arr[off[at]:off[at+1]], e.Elem)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", at, err)
		}
		out := arrayHead(make([]byte, 0, len(arr)+len(v)), uint64(n))
		out = append(out, arr[off[0]:off[at]]...)
		out = append(out, v...)
		return append(out, arr[off[at+1]:]...), nil
	}
	end := at + int(e.Del)
	if at > n || end > n {
		return nil, fmt.Errorf("%d entries from %d of %d", e.Del, at, n)
	}
	size := len(arr)
	for _, v := range e.Ins {
		if _, err := entries(append(arrayHead(nil, 1), v...)); err != nil {
			return nil, fmt.Errorf("inserted entry: %w", err)
		}
		size += len(v)
	}
	out := arrayHead(make([]byte, 0, size+9), uint64(n-int(e.Del)+len(e.Ins)))
	out = append(out, arr[off[0]:off[at]]...)
	for _, v := range e.Ins {
		out = append(out, v...)
	}
	return append(out, arr[off[end]:]...), nil
}
