package operators

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Redaction reads a body by one rule, whatever its Content-Type says,
// because the API's handlers do not look at the Content-Type either: they
// decode every body as JSON (curl -d sends JSON as a form). So
//
//   - a body that is a JSON object is kept as that object, secrets
//     replaced at every depth;
//   - else a body sent as a form is kept as its fields, secrets replaced;
//   - anything else (bad JSON, a JSON scalar or array, a form with
//     field names that are not names, text) is kept as its size only.
//
// Field names must look like field names: a key holding quotes, braces,
// spaces or anything but ASCII letters, digits and "_-.[]" is the sign of
// a body read the wrong way (JSON taken as a form) or of a name that
// folds to a secret one ("paſſword" matches "password" in encoding/json),
// so the whole body is kept as its size only.

const redacted = "[redacted]"

// secretKeys are request fields whose values are never logged, at any
// depth, compared as encoding/json compares field names (case folded).
// "doors" is an access list: door → Wiegand cards.
var secretKeys = map[string]bool{}

func init() {
	for _, k := range []string{"password", "old", "new", "token", "api_key", "doors", "cards", "card",
		"credential", "credentials", "secret", "key", "pin"} {
		secretKeys[foldKey(k)] = true
	}
}

// foldKey folds a field name the way encoding/json matches names to struct
// fields, so a key the decoder would take as "password" is taken so here.
func foldKey(k string) string { return strings.ToUpper(strings.ToLower(k)) }

func isSecretKey(k string) bool {
	f := foldKey(k)
	if secretKeys[f] {
		return true
	}
	for _, part := range []string{"PASSWORD", "TOKEN", "SECRET", "CREDENTIAL"} {
		if strings.Contains(f, part) {
			return true
		}
	}
	return false
}

// fieldName reports whether k looks like a field name (see above).
func fieldName(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.[]", c) >= 0) {
			return false
		}
	}
	return true
}

// errUnreadable means a body is kept as its size only.
var errUnreadable = errors.New("not a readable object")

// redactValue replaces the values of secret fields in a decoded JSON
// value, at any depth.
func redactValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			if !fieldName(k) {
				return nil, errUnreadable
			}
			if isSecretKey(k) {
				v[k] = redacted
				continue
			}
			r, err := redactValue(sub)
			if err != nil {
				return nil, err
			}
			v[k] = r
		}
		return v, nil
	case []any:
		for i, sub := range v {
			r, err := redactValue(sub)
			if err != nil {
				return nil, err
			}
			v[i] = r
		}
		return v, nil
	}
	return v, nil
}

// decodeObject reads body as exactly one JSON object.
func decodeObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, errUnreadable
	}
	if dec.More() {
		return nil, errUnreadable
	}
	return obj, nil
}

// decodeForm reads body as form fields (a field given twice keeps its
// values joined by commas).
func decodeForm(body []byte) (map[string]any, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errUnreadable
	}
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		out[k] = strings.Join(v, ",")
	}
	return out, nil
}

func isForm(ctype string) bool {
	mt, _, err := mime.ParseMediaType(ctype)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// redact is what the audit log keeps of a request body.
func redact(ctype string, body []byte) json.RawMessage {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	fields, err := decodeObject(body)
	if err != nil && isForm(ctype) {
		fields, err = decodeForm(body)
	}
	if err != nil {
		return sizeOnly(len(body))
	}
	return redactFields(fields, len(body))
}

func redactFields(fields map[string]any, size int) json.RawMessage {
	if _, err := redactValue(fields); err != nil {
		return sizeOnly(size)
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return sizeOnly(size)
	}
	if len(out) > auditKeep {
		// Too long to keep: its size and which fields it had.
		return mustJSON(struct {
			Bytes  int      `json:"bytes"`
			Fields []string `json:"fields"`
		}{size, slices.Sorted(maps.Keys(fields))})
	}
	return out
}

func sizeOnly(n int) json.RawMessage { return mustJSON(map[string]int{"bytes": n}) }

// redactStored applies today's redaction to a body an older hub stored:
// one that read JSON sent as a form as a form kept the JSON text as a
// field name (secrets and all), and one that kept a long body as
// {"bytes","truncated"} kept its first 2 KiB as text, only top-level
// secrets redacted. Redacting a body this hub stored changes nothing, so
// the rewrite at open is idempotent.
func redactStored(body json.RawMessage) json.RawMessage {
	if len(body) == 0 {
		return body
	}
	fields, err := decodeObject(body)
	if err != nil {
		return sizeOnly(len(body))
	}
	if n, ok := fields["bytes"].(json.Number); ok && len(fields) == 2 {
		if _, trunc := fields["truncated"]; trunc {
			if size, err := n.Int64(); err == nil {
				return sizeOnly(int(size))
			}
		}
	}
	return redactFields(fields, len(body))
}

// RedactStoredAudit rewrites audit entries stored before redaction read
// bodies by one rule, so that none holds a secret in clear; it returns how
// many it rewrote. Open runs it; it is idempotent.
func RedactStoredAudit(db *badger.DB) (int, error) {
	type fix struct {
		key []byte
		val []byte
	}
	var fixes []fix
	err := db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte(prefixAudit)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error {
				var e Entry
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("audit entry %x: %w", item.Key(), err)
				}
				body := redactStored(e.Body)
				if bytes.Equal(body, e.Body) {
					return nil
				}
				e.Body = body
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				fixes = append(fixes, fix{item.KeyCopy(nil), b})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read audit log: %w", err)
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for _, f := range fixes {
		if err := wb.Set(f.key, f.val); err != nil {
			return 0, fmt.Errorf("redact audit log: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("redact audit log: %w", err)
	}
	return len(fixes), nil
}
