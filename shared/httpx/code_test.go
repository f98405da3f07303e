package httpx

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"linli/shared/event"
)

// Every client error names its kind in "code" next to "error" and "field",
// for a client to word it in its user's language; a handler's own code
// stands, and a shared error value is not changed by answering it.
func TestErrorsCarryACode(t *testing.T) {
	shared := &Error{Status: http.StatusForbidden, Msg: "no"}
	for _, c := range []struct {
		name      string
		err       error
		status    int
		field     string
		code      string
		wantError string
	}{
		{"required", FromValidation(&event.FieldError{Field: "title", Msg: "is required", Code: event.CodeRequired}), 400, "title", "required", "title: is required"},
		{"no code given", FromValidation(&event.FieldError{Field: "end", Msg: "must not be before start"}), 400, "end", "invalid", "end: must not be before start"},
		{"bad request", BadRequest("limit", "limit must be 1 to 10000"), 400, "limit", "invalid", "limit must be 1 to 10000"},
		{"own code", &Error{Status: 400, Field: "expires", Code: "past", Msg: "expires is in the past"}, 400, "expires", "past", "expires is in the past"},
		{"forbidden", shared, 403, "", "forbidden", "no"},
		{"not found", &Error{Status: 404, Msg: "no notice N1"}, 404, "", "not_found", "no notice N1"},
		{"internal", errors.New("disk"), 500, "", "", "disk"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteError(w, c.err)
			var got struct{ Error, Field, Code string }
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if w.Code != c.status || got.Field != c.field || got.Code != c.code || got.Error != c.wantError {
				t.Fatalf("%d %s, want %d field %q code %q error %q", w.Code, w.Body, c.status, c.field, c.code, c.wantError)
			}
		})
	}
	if shared.Code != "" {
		t.Fatalf("answering a shared error set its code to %q", shared.Code)
	}
	// The text validators give their codes.
	for _, c := range []struct {
		err  error
		code string
	}{
		{(&event.NoticeSet{ID: "N1", Site: "s1", Category: "announcement"}).Validate(), event.CodeRequired},
		{(&event.NoticeSet{ID: "N1", Site: "s1", Title: "x", Category: "gossip"}).Validate(), event.CodeNotAllowed},
		{(&event.ActivitySet{ID: "A1", Site: "s1", Title: "x", Type: "activity", Venue: strings.Repeat("场", 121)}).Validate(), event.CodeTooLong},
	} {
		if e := FromValidation(c.err); e == nil || e.Code != c.code {
			t.Errorf("%v: code %+v, want %s", c.err, e, c.code)
		}
	}
}
