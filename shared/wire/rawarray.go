package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Arrays are edited as bytes: a list of 30,000 residents is split at its
// entries' offsets and spliced, with no value decoded or allocated per
// entry (decoding each entry was most of an edge's time per delta).

var errCBOR = errors.New("malformed cbor")

// head reads a CBOR item's head: major type, argument and head length.
// Linli's own encoding has definite lengths only.
func head(b []byte) (major byte, arg uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, errCBOR
	}
	major, info := b[0]>>5, b[0]&31
	switch {
	case info < 24:
		return major, uint64(info), 1, nil
	case info == 24 && len(b) >= 2:
		return major, uint64(b[1]), 2, nil
	case info == 25 && len(b) >= 3:
		return major, uint64(binary.BigEndian.Uint16(b[1:])), 3, nil
	case info == 26 && len(b) >= 5:
		return major, uint64(binary.BigEndian.Uint32(b[1:])), 5, nil
	case info == 27 && len(b) >= 9:
		return major, binary.BigEndian.Uint64(b[1:]), 9, nil
	}
	return 0, 0, 0, fmt.Errorf("%w: head 0x%02x", errCBOR, b[0])
}

// itemLen is the length of the CBOR item at the start of b.
func itemLen(b []byte, depth int) (int, error) {
	if depth > 16 {
		return 0, fmt.Errorf("%w: nested too deep", errCBOR)
	}
	major, arg, n, err := head(b)
	if err != nil {
		return 0, err
	}
	switch major {
	case 0, 1, 7: // integers; simple values and floats carry no more
		return n, nil
	case 2, 3:
		if arg > uint64(len(b)-n) {
			return 0, fmt.Errorf("%w: string past the end", errCBOR)
		}
		return n + int(arg), nil
	case 6:
		m, err := itemLen(b[n:], depth+1)
		return n + m, err
	}
	items := arg
	if major == 5 {
		items *= 2
	}
	if items > uint64(len(b)) {
		return 0, fmt.Errorf("%w: %d items past the end", errCBOR, items)
	}
	off := n
	for range items {
		m, err := itemLen(b[off:], depth+1)
		if err != nil {
			return 0, err
		}
		off += m
	}
	return off, nil
}

// entries returns the offsets in arr (a CBOR array) of its entries, and
// one past the last: entry i is arr[off[i]:off[i+1]].
func entries(arr []byte) ([]int, error) {
	major, count, n, err := head(arr)
	if err != nil || major != 4 {
		return nil, fmt.Errorf("%w: not an array", errCBOR)
	}
	if count > uint64(len(arr)) {
		return nil, fmt.Errorf("%w: %d entries past the end", errCBOR, count)
	}
	off := make([]int, 0, count+1)
	pos := n
	for range count {
		off = append(off, pos)
		m, err := itemLen(arr[pos:], 1)
		if err != nil {
			return nil, err
		}
		pos += m
	}
	if pos != len(arr) {
		return nil, fmt.Errorf("%w: %d bytes after the array", errCBOR, len(arr)-pos)
	}
	return append(off, pos), nil
}

// arrayHead appends the shortest head of an array of count entries (the
// deterministic encoding's).
func arrayHead(dst []byte, count uint64) []byte {
	const major = 4 << 5
	switch {
	case count < 24:
		return append(dst, major|byte(count))
	case count <= 0xff:
		return append(dst, major|24, byte(count))
	case count <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, major|25), uint16(count))
	case count <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, major|26), uint32(count))
	}
	return binary.BigEndian.AppendUint64(append(dst, major|27), count)
}

// Items returns the offsets in b of the CBOR items written one after
// another in it (an array's entries without its head), and one past the
// last: item i is b[off[i]:off[i+1]]. An edge keeps a long array's entries
// in pieces this way, and edits them without decoding any.
func Items(b []byte) ([]int, error) {
	off := make([]int, 0, 16)
	pos := 0
	for pos < len(b) {
		off = append(off, pos)
		m, err := itemLen(b[pos:], 1)
		if err != nil {
			return nil, err
		}
		pos += m
	}
	return append(off, pos), nil
}

// ArrayItems splits arr, a CBOR array, into its entry count and the bytes
// of its entries (arr without its head).
func ArrayItems(arr []byte) (count uint64, items []byte, err error) {
	major, count, n, err := head(arr)
	if err != nil || major != 4 {
		return 0, nil, fmt.Errorf("%w: not an array", errCBOR)
	}
	return count, arr[n:], nil
}

// AppendArrayHead appends the head of an array of count entries, as the
// deterministic encoding writes it: the head, then the entries' bytes,
// make the array event.Marshal would.
func AppendArrayHead(dst []byte, count uint64) []byte { return arrayHead(dst, count) }
