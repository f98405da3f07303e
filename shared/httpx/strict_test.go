package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The strict pass follows the target's type: keys of a struct fold case
// as encoding/json does, keys of a map are exact (two doors "B3-main" and
// "b3-main" are two doors), and duplicates are found at any depth.
func TestDecodeDuplicateKeysFollowTheTarget(t *testing.T) {
	type target struct {
		Name  string              `json:"name"`
		Doors map[string][]string `json:"doors"`
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
		Raw json.RawMessage `json:"raw"`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v target
		if err := Decode(w, r, &v); err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, v)
	}))
	defer srv.Close()
	tests := []struct {
		name, body string
		status     int
		field      string
	}{
		{"map keys differing in case", `{"doors":{"B3-main":["1"],"b3-main":["2"]}}`, 200, ""},
		{"map key twice", `{"doors":{"B3-main":["1"],"B3-main":["2"]}}`, 400, "doors"},
		{"struct key in other case", `{"name":"a","NAME":"b"}`, 400, "NAME"},
		{"struct key twice inside an array", `{"items":[{"id":"1"},{"id":"2","Id":"3"}]}`, 400, "items"},
		{"raw object key twice", `{"raw":{"x":{"y":1,"y":2}}}`, 400, "raw"},
		{"raw object keys in other case", `{"raw":{"k":1,"K":2}}`, 200, ""},
		{"same key in sibling objects", `{"items":[{"id":"1"},{"id":"2"}]}`, 200, ""},
		{"empty key twice", `{"":1,"":2}`, 400, "body"},
		{"surrogate pair", `{"name":"\ud83d\ude00"}`, 200, ""},
		{"escaped backslash then u", `{"name":"\\ud800"}`, 200, ""},
		{"high surrogate then non-surrogate", `{"name":"\ud800\u0041"}`, 400, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || tt.field != "" && out["field"] != tt.field {
				t.Fatalf("got %d %v, want %d naming %q", resp.StatusCode, out, tt.status, tt.field)
			}
		})
	}
}
