package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"linli/shared/test/testkit"
)

// The docs are split over README.md and docs/*.md and link to each other,
// to screenshots and to files of the tree by relative paths: a file moved
// or a heading renamed must not leave a reader at a dead link.
func TestDocLinks(t *testing.T) {
	t.Parallel()
	root := testkit.Root()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{filepath.Join(root, "README.md")}, docs...)
	if len(docs) < 2 {
		t.Fatalf("no docs/*.md under %s", root)
	}
	anchors := map[string]map[string]bool{} // by file, cached
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel(root, doc)
		for _, l := range markdownLinks(string(b)) {
			path, anchor, _ := strings.Cut(l.target, "#")
			target := doc
			if path != "" {
				target = filepath.Join(filepath.Dir(doc), filepath.FromSlash(path))
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s:%d: link %q: %v", name, l.line, l.target, err)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			if anchors[target] == nil {
				tb, err := os.ReadFile(target)
				if err != nil {
					t.Fatal(err)
				}
				anchors[target] = headingAnchors(string(tb))
			}
			if !anchors[target][anchor] {
				t.Errorf("%s:%d: link %q: no heading with anchor #%s", name, l.line, l.target, anchor)
			}
		}
	}
}

// A table of cases the link and anchor rules must get right.
func TestDocLinkRules(t *testing.T) {
	t.Parallel()
	md := "# Linli 邻里 — offline-first\n\n### Operator access (`hub/operators`)\n\n" +
		"## Gateways: doors, cards and fire safety (门禁 · 消防安全)\n## Notes\n## Notes\n" +
		"```sh\n# not a heading\ncurl [x](nowhere.md)\n```\n" +
		"See [a](docs/a.md), [`b`](../b.md#x \"title\"), ![c](img/c.png), [web](https://example.com), `[no](code.md)`.\n"
	wantAnchors := []string{"linli-邻里--offline-first", "operator-access-huboperators",
		"gateways-doors-cards-and-fire-safety-门禁--消防安全", "notes", "notes-1"}
	got := headingAnchors(md)
	for _, a := range wantAnchors {
		if !got[a] {
			t.Errorf("anchor %q missing from %v", a, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a comment in a code block taken for a heading")
	}
	var targets []string
	for _, l := range markdownLinks(md) {
		targets = append(targets, l.target)
	}
	if want := "docs/a.md ../b.md#x img/c.png"; strings.Join(targets, " ") != want {
		t.Errorf("links %q, want %q", targets, want)
	}
}

type docLink struct {
	line   int
	target string
}

var (
	linkRE     = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpanRE = regexp.MustCompile("`[^`]*`")
)

// markdownLinks lists the relative link targets of md outside code blocks
// and code spans; links with a scheme (https:, mailto:) are left out.
func markdownLinks(md string) []docLink {
	var out []docLink
	fenced := false
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		// A code span inside a link's text ([`x`](y)) leaves "[](y)".
		line = codeSpanRE.ReplaceAllString(line, "")
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			if strings.Contains(m[1], ":") {
				continue
			}
			out = append(out, docLink{line: i + 1, target: m[1]})
		}
	}
	return out
}

// headingAnchors gives the anchors GitHub makes of md's headings: the text
// in lower case, code marks and punctuation dropped, spaces as hyphens,
// "-1", "-2"… after repeats.
func headingAnchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		text, ok := strings.CutPrefix(line, "#")
		if fenced || !ok {
			continue
		}
		text = strings.TrimLeft(text, "#")
		if !strings.HasPrefix(text, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(text)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a] = n + 1
			a = a + "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}
