package api

import (
	"errors"
	"net/http"

	"linli/hub/registry"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// fieldError says which request field a domain error is about.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// inField ties err to the request field it is about, for httpError.
func inField(field string, err error) error {
	if err == nil {
		return nil
	}
	return &fieldError{field, err}
}

// httpError translates what a handler returns into the API's answer, in
// one place: the sentinel errors of the packages that own them (merge's
// not-found and bad transition, the registry's unknown device, spent
// token and enrolled id) and the text validators' field errors become
// 4xx answers {"error","field","code"}; an answer built by a handler
// stands; anything else is the server's fault (500).
func httpError(err error) error {
	var he *httpx.Error
	if errors.As(err, &he) {
		return he
	}
	if e := httpx.FromValidation(err); e != nil {
		return e
	}
	field := ""
	var fe *fieldError
	if errors.As(err, &fe) {
		field = fe.field
	}
	status := 0
	switch {
	case errors.Is(err, merge.ErrNotFound), errors.Is(err, registry.ErrUnknown):
		status = http.StatusNotFound
	case errors.Is(err, merge.ErrBadTransition), errors.Is(err, registry.ErrEnrolled):
		status = http.StatusConflict
	case errors.Is(err, registry.ErrTokenUnknown), errors.Is(err, registry.ErrTokenExpired), errors.Is(err, registry.ErrRevoked):
		status = http.StatusForbidden
	default:
		return err
	}
	return &httpx.Error{Status: status, Field: field, Msg: err.Error()}
}
