// Package httpx holds the JSON-over-HTTP conventions edge and hub share:
// strict, bounded request decoding and {"error","field"} answers.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"linli/shared/event"
)

// MaxBody is the largest request body accepted (CONTRACT.md).
const MaxBody = 64 << 10

// Error is an API error answer.
type Error struct {
	Status int    `json:"-"`
	Msg    string `json:"error"`
	Field  string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Msg }

// BadRequest builds a 400 naming field.
func BadRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decode reads one JSON object from r's body into v: at most MaxBody bytes,
// no unknown fields, nothing after the object. Errors name the field.
func Decode(w http.ResponseWriter, r *http.Request, v any) *Error {
	return DecodeLimit(w, r, v, MaxBody)
}

// DecodeLimit is Decode with another size limit, for the few bulk writes
// (a building's access list) that outgrow MaxBody.
func DecodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) *Error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				err = terr
			} else {
				return BadRequest("body", "unexpected data after the JSON object")
			}
		}
	}
	if err == nil {
		return nil
	}
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return BadRequest("body", "body is larger than %d KiB", limit>>10)
	case errors.Is(err, io.EOF):
		return BadRequest("body", "body is required: a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("body", "bad JSON: unexpected end of input")
	case errors.As(err, &se):
		return BadRequest("body", "bad JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			return BadRequest("body", "body must be a JSON object")
		}
		return BadRequest(field, "%s must be of type %s, not %s", field, jsonType(ute.Type.Kind().String()), ute.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if field == "" {
			return BadRequest("body", "unknown field with an empty name")
		}
		return BadRequest(field, "unknown field %q", field)
	}
	return BadRequest("body", "bad JSON: %v", err)
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "uint64", "float64", "uint32", "int32":
		return "number"
	case "bool":
		return "boolean"
	case "slice":
		return "array"
	}
	return "object"
}

// FromValidation turns a validation error into a 400 naming the field.
func FromValidation(err error) *Error {
	var fe *event.FieldError
	if errors.As(err, &fe) {
		return &Error{Status: http.StatusBadRequest, Field: fe.Field, Msg: fe.Error()}
	}
	return nil
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return // the client went away mid-answer; nobody is left to tell
	}
}

// WriteError writes an *Error, or a 500 for anything else.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Msg: err.Error()}
	}
	WriteJSON(w, e.Status, e)
}
