package browser

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"
)

// The accessibility check finds what it must on a page served with the
// same no-inline-script policy as the project's UIs, and nothing on the
// same page made right.
func TestAxeFindsViolationsUnderCSP(t *testing.T) {
	pages := map[string]string{
		"/bad": `<!doctype html><html lang="en"><head><title>bad</title></head><body><main>
			<select id="role"><option>a</option></select>
			<p style="color:#2f9e61;background:#fff">low contrast text</p>
			<li>an item outside a list</li></main></body></html>`,
		"/good": `<!doctype html><html lang="en"><head><title>good</title></head><body><main>
			<label for="role">Role</label><select id="role"><option>a</option></select>
			<p style="color:#1a6e40;background:#fff">readable text</p>
			<ul><li>an item in a list</li></ul></main></body></html>`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	p := New(t).Page(t, 800, 600)

	p.Do(chromedp.Navigate(srv.URL + "/bad"))
	var blocking []string
	for _, v := range p.Axe() {
		if v.Blocking() {
			blocking = append(blocking, v.ID)
			if len(v.Nodes) == 0 || len(v.Nodes[0].Target) == 0 || v.Nodes[0].Summary == "" {
				t.Errorf("%s names no element or reason: %+v", v.ID, v)
			}
		}
	}
	slices.Sort(blocking)
	if want := []string{"color-contrast", "listitem", "select-name"}; !slices.Equal(blocking, want) {
		t.Errorf("critical or serious findings on the bad page: %v, want %v", blocking, want)
	}

	p.Do(chromedp.Navigate(srv.URL + "/good"))
	if vs := p.Axe(); len(vs) != 0 {
		t.Errorf("findings on the good page: %v", vs)
	}
	if problems := p.Problems(); len(problems) != 0 {
		t.Errorf("running axe-core caused script errors or CSP violations: %q", problems)
	}
}
