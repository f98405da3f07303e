package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/chromedp/chromedp"
)

// AxeTags are the rule sets the accessibility check runs: WCAG 2.0, 2.1
// and 2.2 at levels A and AA.
var AxeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"}

// AxeScript is where `make deps` installs axe-core (npm ci in the axe
// directory beside this file, at the version its package-lock.json pins).
func AxeScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "axe", "node_modules", "axe-core", "axe.min.js")
}

// Violation is one axe-core rule the page breaks, with every element that
// breaks it.
type Violation struct {
	ID     string    `json:"id"`
	Impact string    `json:"impact"` // minor, moderate, serious or critical
	Help   string    `json:"help"`
	Nodes  []AxeNode `json:"nodes"`
}

// AxeNode is one element a rule failed on.
type AxeNode struct {
	// Target is the element's CSS selector path (one entry per frame or
	// shadow root on the way to it).
	Target  []json.RawMessage `json:"target"`
	Summary string            `json:"failureSummary"`
}

// Blocking reports whether the finding is one the tests refuse: critical
// or serious.
func (v Violation) Blocking() bool { return v.Impact == "critical" || v.Impact == "serious" }

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.ID, v.Impact, v.Help)
	for _, n := range v.Nodes {
		targets := make([]string, len(n.Target))
		for i, t := range n.Target {
			targets[i] = string(t)
		}
		fmt.Fprintf(&b, "\n    at %s\n      %s", strings.Join(targets, " >> "),
			strings.ReplaceAll(strings.TrimSpace(n.Summary), "\n", "\n      "))
	}
	return b.String()
}

// Axe runs axe-core over the page as it is now (injected once per
// document) with the AxeTags rules and returns every violation. A missing
// axe-core fails the test: the check is part of the suite, not optional.
func (p *Page) Axe() []Violation {
	p.T.Helper()
	if loaded := Eval[bool](p, `typeof window.axe === 'object' && typeof window.axe.run === 'function'`); !loaded {
		path := AxeScript()
		src, err := os.ReadFile(path)
		if err != nil {
			p.T.Fatalf("axe-core is not installed (%v): run `make deps`, which runs npm ci in %s", err, filepath.Dir(filepath.Dir(filepath.Dir(path))))
		}
		// Evaluated over the DevTools protocol, which the page's
		// Content-Security-Policy (no inline script) does not govern.
		p.Do(chromedp.Evaluate[chromedp.Void](string(src)))
	}
	tags, err := json.Marshal(AxeTags)
	if err != nil {
		p.T.Fatal(err)
	}
	expr := `axe.run(document, {runOnly: {type: 'tag', values: ` + string(tags) + `}, resultTypes: ['violations']})
		.then(r => JSON.stringify(r.violations))`
	ctx, cancel := context.WithTimeout(p.Ctx, p.Timeout)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fail(fmt.Errorf("axe.run: %w", err))
	}
	var vs []Violation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		p.T.Fatalf("axe.run answered %.200q: %v", out, err)
	}
	return vs
}

// CheckAccessible runs axe-core and marks the test failed, listing each
// critical or serious finding (rule, impact, the elements' selectors and
// what is wrong with them); where says which screen was checked. The test
// goes on, so one run reports every screen's findings.
func (p *Page) CheckAccessible(where string) {
	p.T.Helper()
	var bad []string
	for _, v := range p.Axe() {
		if v.Blocking() {
			bad = append(bad, v.String())
		}
	}
	if len(bad) > 0 {
		p.T.Errorf("axe-core on %s: %d critical or serious finding(s):\n  %s", where, len(bad), strings.Join(bad, "\n  "))
	}
}
