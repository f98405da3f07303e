package httpx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// checkStrict walks data's tokens before it is unmarshalled into a value of
// type t, refusing what encoding/json lets through silently:
//
//   - a key given twice in one object, at any depth: the last would win,
//     so what was checked and what is stored could differ. In an object
//     decoded into a struct, keys that differ only in case count as the
//     same key, as encoding/json matches struct fields regardless of case;
//   - a string (key or value) that is not valid UTF-8 or holds a lone
//     UTF-16 surrogate escape: both would quietly become U+FFFD.
//
// Syntax errors are left to the decoder, which names them.
func checkStrict(data []byte, t reflect.Type) *Error {
	type frame struct {
		object  bool
		wantKey bool            // object: the next string is a key
		fold    bool            // object decoded into a struct
		seen    map[string]bool // object: keys so far (folded when fold)
		key     string          // object: the current key
		index   int             // array: the current element
		t       reflect.Type    // what the container is decoded into; nil if unknown
	}
	var stack []*frame
	// path names where a token is for error messages ("doors.B3-main[2]");
	// field is the first-level key, what the {"field"} of the answer names.
	path := func() string {
		var b strings.Builder
		for i, f := range stack {
			switch {
			case f.object && i == 0:
				b.WriteString(f.key)
			case f.object:
				b.WriteString("." + f.key)
			default:
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			}
		}
		return b.String()
	}
	field := func() string {
		if len(stack) > 0 && stack[0].object && stack[0].key != "" && !stack[0].wantKey {
			return stack[0].key
		}
		return "body"
	}
	// done records that a value ended inside the container on top.
	done := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.object {
			f.wantKey = true
		} else {
			f.index++
		}
	}
	// valueType is what the value about to start is decoded into.
	valueType := func() reflect.Type {
		if len(stack) == 0 {
			return t
		}
		f := stack[len(stack)-1]
		if f.object {
			return memberType(f.t, f.key)
		}
		return elemType(f.t)
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error the decoder will name
		}
		end := dec.InputOffset()
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				f := &frame{object: tok == '{', t: valueType()}
				if f.object {
					f.wantKey, f.seen = true, map[string]bool{}
					f.fold = isStruct(f.t)
				}
				stack = append(stack, f)
			case '}', ']':
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			isKey := top != nil && top.object && top.wantKey
			if msg := badString(data[start:end]); msg != "" {
				if isKey {
					if len(stack) == 1 {
						return BadRequest("body", "a field name %s", msg)
					}
					return BadRequest(field(), "a field name inside %s %s", path(), msg)
				}
				return BadRequest(field(), "%s %s", orBody(path()), msg)
			}
			if !isKey {
				done()
				break
			}
			k := tok
			if top.fold {
				k = foldKey(tok)
			}
			if top.seen[k] {
				top.key, top.wantKey = tok, false
				where := path()
				if len(stack) == 1 && tok != "" {
					return BadRequest(tok, "%s is given more than once: each field may appear only once", strconv.Quote(tok))
				}
				if len(stack) == 1 {
					return BadRequest("body", "a field with an empty name is given more than once")
				}
				return BadRequest(field(), "%s is given more than once: each field may appear only once", where)
			}
			top.seen[k] = true
			top.key, top.wantKey = tok, false
		default:
			done()
		}
	}
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

// badString says what is wrong with a string token as it stands in the
// input (raw may start with the ',' or ':' and spaces before it), or "".
func badString(raw []byte) string {
	lit := raw[max(bytes.IndexByte(raw, '"'), 0):]
	if !utf8.Valid(lit) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		i++ // the escaped character: a second '\\' is skipped here too
		if i >= len(lit) || lit[i] != 'u' || i+4 >= len(lit) {
			continue
		}
		r := hex4(lit[i+1 : i+5])
		i += 4
		if !utf16.IsSurrogate(r) {
			continue
		}
		if r < 0xDC00 && i+6 < len(lit) && lit[i+1] == '\\' && lit[i+2] == 'u' {
			if lo := hex4(lit[i+3 : i+7]); lo >= 0xDC00 && lo <= 0xDFFF {
				i += 6
				continue
			}
		}
		return fmt.Sprintf("holds a lone UTF-16 surrogate (\\u%04X), which is not text", r)
	}
	return ""
}

func hex4(b []byte) rune {
	v, err := strconv.ParseUint(string(b), 16, 32)
	if err != nil {
		return -1
	}
	return rune(v)
}

// foldKey maps every letter to the smallest of its case variants, so keys
// encoding/json would match to one struct field ("score", "Score", and
// "ſcore" with the long s) fold alike.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		return low
	}, s)
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

func isStruct(t reflect.Type) bool {
	t = deref(t)
	return t != nil && t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshaler)
}

// memberType is the type the value of key is decoded into inside an object
// decoded into t; nil when unknown (an interface, a raw message).
func memberType(t reflect.Type, key string) reflect.Type {
	t = deref(t)
	switch {
	case t == nil:
		return nil
	case t.Kind() == reflect.Map:
		return t.Elem()
	case !isStruct(t):
		return nil
	}
	var folded reflect.Type
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous && f.Tag.Get("json") == "" {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		if name == key {
			return f.Type
		}
		if folded == nil && strings.EqualFold(name, key) {
			folded = f.Type
		}
	}
	return folded
}

func elemType(t reflect.Type) reflect.Type {
	t = deref(t)
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		return t.Elem()
	}
	return nil
}
