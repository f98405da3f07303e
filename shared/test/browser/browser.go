// Package browser runs Debian's Chromium headless for tests, with a fixed,
// minimal set of flags and a fresh profile per run, and drives it with
// chromedp. Nothing is downloaded: the browser is the system's (`make deps`
// installs it), and pages only ever load from loopback.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Flags are the only switches the browser is started with. chromedp adds
// the DevTools pipe it drives the browser through, a fresh --user-data-dir
// and about:blank; Args reports the whole command line.
var Flags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
}

// ErrNoBrowser means no Chromium binary was found.
var ErrNoBrowser = errors.New("no chromium binary (install it with `make deps`, or set LINLI_CHROMIUM)")

// Path finds the system browser: $LINLI_CHROMIUM, else chromium on PATH,
// else /usr/bin/chromium.
func Path() (string, error) {
	if p := os.Getenv("LINLI_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	return "", ErrNoBrowser
}

// Browser is one headless Chromium process.
type Browser struct {
	ctx  context.Context
	mu   sync.Mutex
	args []string
}

// New starts a browser that stops when the test ends. Without a browser
// the test is skipped, except under CI (CI set), where a missing browser is
// a broken set-up and fails.
func New(t testing.TB) *Browser {
	t.Helper()
	path, err := Path()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	b := &Browser{}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path)}
	for _, f := range Flags {
		opts = append(opts, chromedp.Flag(strings.TrimPrefix(f, "--"), true))
	}
	opts = append(opts, chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
		b.mu.Lock()
		b.args = append([]string(nil), cmd.Args[1:]...)
		b.mu.Unlock()
		// chromedp's own default, which a ModifyCmdFunc replaces: the
		// browser dies with the test binary instead of outliving it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Run starts the browser; it must not carry a timeout, which
	// would end the browser with it (see chromedp.Run).
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(ctx) }()
	select {
	case err = <-start:
	case <-time.After(60 * time.Second):
		err = errors.New("chromium did not start within 60s")
	}
	if err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", path, err)
	}
	b.ctx = ctx
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil {
			t.Logf("close browser: %v", err)
		}
		cancel()
		cancelAlloc()
	})
	return b
}

// Args is the browser's command line, without the program.
func (b *Browser) Args() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.args...)
}

// Page is one tab.
type Page struct {
	T   testing.TB
	Ctx context.Context
	// Timeout bounds each step run through Do and Run.
	Timeout time.Duration

	width, height int64 // of the viewport

	mu       sync.Mutex
	problems []string // uncaught exceptions and CSP violations
	bytes    map[network.RequestID]float64
}

// Page opens a new tab with a width×height viewport; it closes when the
// test ends. The page's uncaught exceptions and Content-Security-Policy
// violations are collected (see Problems), and so are the bytes each
// response took on the wire (see Transferred).
func (b *Browser) Page(t testing.TB, width, height int64) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close tab: %v", err)
		}
		cancel()
	})
	p := &Page{T: t, Ctx: ctx, Timeout: 45 * time.Second, bytes: map[network.RequestID]float64{}}
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatalf("open tab: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventLoadingFinished:
			p.mu.Lock()
			p.bytes[e.RequestID] = e.EncodedDataLength
			p.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("listen to the tab: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				p.mu.Lock()
				p.problems = append(p.problems, m.String())
				p.mu.Unlock()
			}
		}
	}()
	p.Viewport(width, height)
	return p
}

// Viewport resizes the page, in portrait or landscape as the sizes say.
func (p *Page) Viewport(width, height int64) {
	p.T.Helper()
	orient := chromedp.EmulateLandscape
	if height > width {
		orient = chromedp.EmulatePortrait
	}
	p.Do(chromedp.EmulateViewport(width, height, orient))
	p.width, p.height = width, height
}

// Do runs steps within the page's timeout and fails the test on error,
// logging what the page showed at the time.
func (p *Page) Do(steps ...chromedp.Action[chromedp.Void]) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, p.Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail(err)
	}
}

// Click clicks what css selects once it is shown and enabled. A live page
// may redraw the element between finding and clicking it; that click is
// tried again on the new element, within the page's timeout.
func (p *Page) Click(css string) {
	p.T.Helper()
	sel, err := json.Marshal(css)
	if err != nil {
		p.fail(err)
	}
	clickable := `(() => { const e = document.querySelector(` + string(sel) + `); return !!e && !e.disabled && e.getClientRects().length > 0; })()`
	deadline := time.Now().Add(p.Timeout)
	for {
		p.Wait(p.Timeout, css+" to be clickable", clickable)
		ctx, cancel := context.WithTimeout(p.Ctx, p.Timeout)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(css)))
		cancel()
		if err == nil {
			return
		}
		redrawn := strings.Contains(err.Error(), "Could not find node") || strings.Contains(err.Error(), "detached") ||
			strings.Contains(err.Error(), "No node with given id")
		if !redrawn || time.Now().After(deadline) {
			p.fail(fmt.Errorf("click %s: %w", css, err))
			return
		}
	}
}

// Run runs one action that returns a value, like Do.
func Run[T any](p *Page, a chromedp.Action[T]) T {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, p.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.fail(err)
	}
	return v
}

// Eval evaluates a JavaScript expression and decodes its value into T.
func Eval[T any](p *Page, expr string) T {
	p.T.Helper()
	return Run(p, chromedp.Evaluate[T](expr))
}

// Wait polls a JavaScript expression until it is truthy, for at most
// timeout; why describes what is awaited in the failure.
func (p *Page) Wait(timeout time.Duration, why, expr string) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.fail(fmt.Errorf("waiting for %s (%s): %w", why, expr, err))
	}
}

func (p *Page) fail(err error) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 5*time.Second)
	defer cancel()
	text, terr := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if terr != nil {
		text = "(page text unreadable: " + terr.Error() + ")"
	}
	p.T.Fatalf("%v\n---- the page showed:\n%s\n----", err, text)
}

// Problems lists the uncaught exceptions and CSP violations seen so far.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// Transferred is the number of bytes the page's responses have taken on
// the wire so far (headers and bodies as encoded), and how many there were.
func (p *Page) Transferred() (bytes int64, responses int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n float64
	for _, b := range p.bytes {
		n += b
	}
	return int64(n), len(p.bytes)
}

// ResetTransferred forgets the responses counted so far.
func (p *Page) ResetTransferred() {
	p.mu.Lock()
	p.bytes = map[network.RequestID]float64{}
	p.mu.Unlock()
}

// Screenshot captures what the viewport shows as PNG, scaled by scale (0.5
// halves both sides).
func (p *Page) Screenshot(scale float64) []byte {
	p.T.Helper()
	at := Eval[[]float64](p, `[window.scrollX, window.scrollY]`)
	ctx, cancel := context.WithTimeout(p.Ctx, p.Timeout)
	defer cancel()
	fromSurface := true
	r, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{
		Format: page.CaptureScreenshotFormatPng, FromSurface: &fromSurface,
		Clip: &page.Viewport{X: at[0], Y: at[1], Width: float64(p.width), Height: float64(p.height), Scale: scale},
	})
	if err != nil {
		p.fail(fmt.Errorf("screenshot: %w", err))
	}
	return r.Data
}
