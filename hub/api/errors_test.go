package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"linli/hub/registry"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// Whatever a handler returns is answered by one translation: the domain
// packages' sentinel errors, however wrapped, become their 4xx answers in
// the {"error","field","code"} shape; a handler's own answer stands; the
// rest is a 500.
func TestHandlerErrorsAnswerInOnePlace(t *testing.T) {
	a := &API{}
	for _, c := range []struct {
		name        string
		err         error
		status      int
		field, code string
		error       string
	}{
		{"not found", fmt.Errorf("report k1.1: %w", merge.ErrNotFound), 404, "", "not_found", "report k1.1: not found"},
		{"bad transition in a field", inField("into", fmt.Errorf("merge k1.1 into k1.2: %w", merge.ErrBadTransition)), 409, "into", "conflict", "merge k1.1 into k1.2: bad status transition"},
		{"unknown device", fmt.Errorf("revoke: %w", registry.ErrUnknown), 404, "", "not_found", "revoke: device is not enrolled"},
		{"enrolled already", inField("token", registry.ErrEnrolled), 409, "token", "conflict", registry.ErrEnrolled.Error()},
		{"spent token", inField("token", registry.ErrTokenExpired), 403, "token", "forbidden", registry.ErrTokenExpired.Error()},
		{"field error", fmt.Errorf("notice: %w", &event.FieldError{Field: "title", Msg: "is required", Code: event.CodeRequired}), 400, "title", "required", "title: is required"},
		{"handler's answer", &httpx.Error{Status: http.StatusTooManyRequests, Msg: "slow down"}, 429, "", "too_many_requests", "slow down"},
		{"server fault", errors.New("disk on fire"), 500, "", "", "disk on fire"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			a.wrap(func(http.ResponseWriter, *http.Request) error { return c.err })(w, httptest.NewRequest("GET", "/", nil))
			var got struct{ Error, Field, Code string }
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("%d %s: %v", w.Code, w.Body, err)
			}
			if w.Code != c.status || got.Field != c.field || got.Code != c.code || got.Error != c.error {
				t.Fatalf("%d %s, want %d field %q code %q error %q", w.Code, w.Body, c.status, c.field, c.code, c.error)
			}
		})
	}
}
