// Package httpx holds the JSON-over-HTTP conventions edge and hub share:
// strict, bounded request decoding and {"error","field"} answers.
package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"linli/shared/event"
)

// MaxBody is the largest request body accepted (docs/interface.md).
const MaxBody = 64 << 10

// Error is an API error answer.
type Error struct {
	Status int    `json:"-"`
	Msg    string `json:"error"`
	Field  string `json:"field,omitempty"`
	// Code is the kind of fault in a word (event.CodeRequired, "past",
	// "forbidden", …) for a client to key its own message by, in its
	// user's language; Msg stays the English explanation. WriteError
	// fills it from the status when a handler gave none.
	Code string `json:"code,omitempty"`
}

func (e *Error) Error() string { return e.Msg }

// BadRequest builds a 400 naming field.
func BadRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decode reads one JSON object from r's body into v: at most MaxBody bytes,
// no unknown fields, no key given twice, only valid UTF-8, nothing after
// the object. Errors name the field.
func Decode(w http.ResponseWriter, r *http.Request, v any) *Error {
	return DecodeLimit(w, r, v, MaxBody)
}

// TooLarge is the answer to a body over limit bytes: 400 naming the body,
// as the edge API has always answered an oversized body (clients rely on
// it), whether the length was declared or found while reading.
func TooLarge(limit int64) *Error {
	return &Error{Status: http.StatusBadRequest, Field: "body", Msg: fmt.Sprintf("body is larger than %d KiB", limit>>10)}
}

// DecodeLimit is Decode with another size limit, for the few bulk writes
// (a building's access list) that outgrow MaxBody.
func DecodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) *Error {
	// A declared length over the limit is refused before the body is
	// touched: net/http sends "100 Continue" on the first read, and a
	// client that waited for it would then send the whole body only to be
	// cut off.
	if r.ContentLength > limit {
		return TooLarge(limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return TooLarge(limit)
		}
		return BadRequest("body", "could not read the body: %v", err)
	}
	if e := checkStrict(data, reflect.TypeOf(v)); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			return BadRequest("body", "unexpected data after the JSON object")
		}
		return nil
	}
	var (
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
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
		want := jsonType(ute.Type.Kind())
		if num, ok := strings.CutPrefix(ute.Value, "number "); ok && want == "number" {
			if isInt(ute.Type.Kind()) && strings.ContainsAny(num, ".eE") {
				return BadRequest(field, "%s must be a whole number, not %s", field, num)
			}
			return BadRequest(field, "%s: %s is out of range", field, num)
		}
		return BadRequest(field, "%s must be of type %s, not %s", field, want, ute.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if field == "" {
			return BadRequest("body", "unknown field with an empty name")
		}
		return BadRequest(field, "unknown field %q", field)
	}
	return BadRequest("body", "bad JSON: %v", err)
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func jsonType(k reflect.Kind) string {
	switch {
	case k == reflect.String:
		return "string"
	case isInt(k), k == reflect.Float32, k == reflect.Float64:
		return "number"
	case k == reflect.Bool:
		return "boolean"
	case k == reflect.Slice, k == reflect.Array:
		return "array"
	}
	return "object"
}

// FromValidation turns a validation error into a 400 naming the field.
func FromValidation(err error) *Error {
	var fe *event.FieldError
	if errors.As(err, &fe) {
		code := fe.Code
		if code == "" {
			code = event.CodeInvalid
		}
		return &Error{Status: http.StatusBadRequest, Field: fe.Field, Msg: fe.Error(), Code: code}
	}
	return nil
}

// statusCodes name the kind of a client error a handler gave no code for.
var statusCodes = map[int]string{
	http.StatusBadRequest:      event.CodeInvalid,
	http.StatusUnauthorized:    "unauthorized",
	http.StatusForbidden:       "forbidden",
	http.StatusNotFound:        "not_found",
	http.StatusConflict:        "conflict",
	http.StatusTooManyRequests: "too_many_requests",
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
	if e.Code == "" && statusCodes[e.Status] != "" {
		c := *e // a shared *Error value (errBadToken) stays as it is
		c.Code = statusCodes[e.Status]
		e = &c
	}
	WriteJSON(w, e.Status, e)
}
