package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"linli/shared/accesslist"
	"linli/shared/merge"
	"linli/shared/test/testkit"
)

// roles maps bearer tokens to principals.
type roles map[string]Principal

func (r roles) Authenticate(req *http.Request) (Principal, error) {
	return r[strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")], nil
}

func TestAccessListRoutes(t *testing.T) {
	st := testkit.NewMemState()
	srv := httptest.NewServer((&API{State: st, Auth: roles{"admin": {Name: "admin", Admin: true}, "op": {Name: "op1"}}}).Handler())
	defer srv.Close()
	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(t, resp)
	}
	good := `{"doors":{"B3-main":["26:123:45678","26:0123:45678","34:4097:513"],"B3-back":[]}}`
	tests := []struct {
		name, method, path, token, body string
		code                            int
		field                           string
	}{
		{"anonymous", "PUT", "/api/v1/access-lists/S1/B3", "", good, 401, ""},
		{"an operator is not an admin", "PUT", "/api/v1/access-lists/S1/B3", "op", good, 403, ""},
		{"bad credential", "PUT", "/api/v1/access-lists/S1/B3", "admin", `{"doors":{"B3-main":["C42"]}}`, 400, "doors"},
		{"bad door", "PUT", "/api/v1/access-lists/S1/B3", "admin", `{"doors":{"B3 main":[]}}`, 400, "doors"},
		{"no doors", "PUT", "/api/v1/access-lists/S1/B3", "admin", `{}`, 400, "doors"},
		{"unknown field", "PUT", "/api/v1/access-lists/S1/B3", "admin", `{"doors":{},"cards":[]}`, 400, "cards"},
		{"bad building", "PUT", "/api/v1/access-lists/S1/B%2F3", "admin", good, 400, "building"},
		{"not there yet", "GET", "/api/v1/access-lists/S1/B3", "op", "", 404, ""},
		{"set", "PUT", "/api/v1/access-lists/S1/B3", "admin", good, 200, ""},
		{"read by an operator", "GET", "/api/v1/access-lists/S1/B3", "op", "", 200, ""},
		{"read anonymously", "GET", "/api/v1/access-lists", "", "", 401, ""},
	}
	for _, tt := range tests {
		code, body := do(tt.method, tt.path, tt.token, tt.body)
		if code != tt.code {
			t.Fatalf("%s: %s %s answered %d %s, want %d", tt.name, tt.method, tt.path, code, body, tt.code)
		}
		if tt.field != "" {
			var e struct{ Field string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Field != tt.field {
				t.Fatalf("%s: error %s, want field %q", tt.name, body, tt.field)
			}
		}
	}

	_, body := do("GET", "/api/v1/access-lists/S1/B3", "admin", "")
	var got accessListOut
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "S1:B3" || len(got.Doors) != 2 || got.Doors[0].Door != "B3-back" || got.Doors[0].Cards != 0 || got.Doors[1].Cards != 2 {
		t.Fatalf("list %+v: want B3-back empty and B3-main with 2 cards (the same card twice is one)", got)
	}
	if strings.Contains(body, "45678") || strings.Contains(body, "4097") {
		t.Fatalf("a card in clear in %s", body)
	}
	// The hub keeps hashes only, and a second building reuses the site's
	// key: the same card has the same pseudonym in both.
	var key []byte
	st.Read(func(m *merge.State) { key = m.AccessKey("S1") })
	want := accesslist.Pseudonym(accesslist.Hash(key, "26:123:45678"))
	if code, b := do("PUT", "/api/v1/access-lists/S1/B4", "admin", `{"doors":{"B4-main":["26:123:45678"]}}`); code != 200 || !strings.Contains(b, want) {
		t.Fatalf("second building: %d %s, want pseudonym %s", code, b, want)
	}
	if !strings.Contains(body, want) {
		t.Fatalf("first building %s lacks pseudonym %s", body, want)
	}

	// A building's list may outgrow the 64 KiB of other writes.
	var sb strings.Builder
	sb.WriteString(`{"doors":{"B3-main":[`)
	for i := range 6000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"26:%d:%d"`, 1+i/60000, i)
	}
	sb.WriteString(`]}}`)
	if sb.Len() <= 64<<10 {
		t.Fatalf("test body of %d bytes is not over 64 KiB", sb.Len())
	}
	if code, b := do("PUT", "/api/v1/access-lists/S1/B3", "admin", sb.String()); code != 200 || !strings.Contains(b, `"cards":6000`) {
		t.Fatalf("large list: %d %.200s", code, b)
	}
	code, b := do("GET", "/api/v1/access-lists?site=S1", "op", "")
	var all []accessListOut
	if err := json.Unmarshal([]byte(b), &all); code != 200 || err != nil || len(all) != 2 {
		t.Fatalf("list all: %d %.200s (%v)", code, b, err)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var sb strings.Builder
	if _, err := io.Copy(&sb, resp.Body); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}
