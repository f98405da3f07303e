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
	var ol, nl []cbor.RawMessage
	if event.UnmarshalOwn(old, &ol) != nil || event.UnmarshalOwn(new, &nl) != nil {
		return ListEdit{}, false
	}
	p := 0
	for p < len(ol) && p < len(nl) && bytes.Equal(ol[p], nl[p]) {
		p++
	}
	s := 0
	for s < len(ol)-p && s < len(nl)-p && bytes.Equal(ol[len(ol)-1-s], nl[len(nl)-1-s]) {
		s++
	}
	om, nm := ol[p:len(ol)-s], nl[p:len(nl)-s]
	e := ListEdit{At: uint32(p)}
	if len(om) == 1 && len(nm) == 1 && isMap(om[0]) && isMap(nm[0]) {
		if sub, err := Diff(om[0], nm[0]); err == nil {
			e.Elem = sub
			return e, true
		}
	}
	e.Del, e.Ins = uint32(len(om)), nm
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
		var l []cbor.RawMessage
		if err := event.UnmarshalOwn(m[k], &l); err != nil {
			return nil, fmt.Errorf("patch: field %d: %w", k, err)
		}
		at := int(e.At)
		if e.Elem != nil {
			if at >= len(l) {
				return nil, fmt.Errorf("patch: field %d: entry %d of %d", k, at, len(l))
			}
			v, err := Patch(l[at], e.Elem)
			if err != nil {
				return nil, fmt.Errorf("patch: field %d entry %d: %w", k, at, err)
			}
			l[at] = v
		} else {
			if at+int(e.Del) > len(l) {
				return nil, fmt.Errorf("patch: field %d: %d entries from %d of %d", k, e.Del, at, len(l))
			}
			l = slices.Replace(l, at, at+int(e.Del), e.Ins...)
		}
		if l == nil {
			l = []cbor.RawMessage{} // an empty list stays a list, not null
		}
		v, err := event.Marshal(l)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return event.Marshal(m)
}
