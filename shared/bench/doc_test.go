package bench

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The generated table's link to results.md must resolve from the doc it is
// written into, wherever that doc lives.
func TestRewriteLinksResultsFromTheDoc(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "shared", "bench", "results.md")
	tests := []struct {
		doc, want string
	}{
		{filepath.Join(dir, "README.md"), "](shared/bench/results.md)"},
		{filepath.Join(dir, "docs", "performance.md"), "](../shared/bench/results.md)"},
		{filepath.Join(dir, "shared", "bench", "notes.md"), "](results.md)"},
	}
	for _, tt := range tests {
		if err := os.MkdirAll(filepath.Dir(tt.doc), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tt.doc, []byte("# P\n"+readmeBegin+"\nold\n"+readmeEnd+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := rewriteReadme(tt.doc, &Results{}, results); err != nil {
			t.Fatalf("%s: %v", tt.doc, err)
		}
		out, err := os.ReadFile(tt.doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: no link %q in\n%s", tt.doc, tt.want, out)
		}
	}
}

// make bench rewrites the table in the file its --readme names: that file
// must hold the markers once each, and the link the harness writes there
// must reach the results file --out names (shared/bench/results.md by default).
func TestBenchTargetHasMarkers(t *testing.T) {
	root := filepath.Join("..", "..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`linli-bench [^\n]*--readme (\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile's bench target passes no --readme")
	}
	doc := filepath.Join(root, string(m[1]))
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatalf("bench --readme %s: %v", m[1], err)
	}
	if _, err := spliceMarkers(b, "x"); err != nil {
		t.Fatalf("bench --readme %s: %v", m[1], err)
	}
	link := linkFrom(doc, filepath.Join(root, "shared", "bench", "results.md"))
	if !strings.Contains(string(b), "]("+link+")") {
		t.Errorf("%s links to the results not as %q", m[1], link)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(doc), filepath.FromSlash(link))); err != nil {
		t.Errorf("%s: link %s: %v", m[1], link, err)
	}
}
