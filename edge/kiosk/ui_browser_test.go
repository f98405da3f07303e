package kiosk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"linli/edge/api"
	"linli/edge/diskguard"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/test/browser"
)

// The UI in a real browser against this package's API with scripted
// fakes behind it, for what the real binaries cannot be made to do on
// demand: a full disk, a closed store, a field error the UI did not catch,
// a slow fsync. shared/test/e2e drives the same UI against the real binaries.

// scriptedLog answers appends as the test says: with err, or after gate
// opens.
type scriptedLog struct {
	mu       sync.Mutex
	err      error
	gate     chan struct{}
	seq      uint64
	appended []event.Body
}

func (l *scriptedLog) set(err error, gate chan struct{}) {
	l.mu.Lock()
	l.err, l.gate = err, gate
	l.mu.Unlock()
}

func (l *scriptedLog) Append(ctx context.Context, body event.Body) (event.Event, error) {
	l.mu.Lock()
	err, gate := l.err, l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return event.Event{}, ctx.Err()
		}
	}
	if err != nil {
		return event.Event{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.appended = append(l.appended, body)
	return event.Event{Device: "kiosk-t", Seq: l.seq, Kind: body.Kind()}, nil
}

func (l *scriptedLog) Cursors() (last, acked, pending uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, 0, l.seq
}

func (l *scriptedLog) bodies() []event.Body {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]event.Body(nil), l.appended...)
}

// fixedReplica is a site as last synced: one activity, a safety alarm and
// an announcement, no reports.
type fixedReplica struct{}

func (fixedReplica) Notices(time.Time) ([]replica.Notice, error) {
	now := time.Now().UTC()
	return []replica.Notice{
		{NoticeView: merge.NoticeView{ID: "alarm-1", Title: "B1 烟感报警", Body: "请勿使用电梯", Category: "safety"}, Alarm: true, Time: now},
		{NoticeView: merge.NoticeView{ID: "N1", Title: "停水通知", Body: "周六停水", Category: "announcement"}, Time: now},
	}, nil
}

func (fixedReplica) Activities(string) ([]replica.Activity, error) {
	return []replica.Activity{{ID: "A1", Title: "社区义诊", Kind: "activity", Capacity: 10, SeatsLeft: 4}}, nil
}

func (fixedReplica) Report(string) (replica.Report, bool, error) { return replica.Report{}, false, nil }
func (fixedReplica) Reports(string, string, bool) ([]replica.Report, error) {
	return []replica.Report{}, nil
}

// noResidents has nothing indexed.
type noResidents struct{}

func (noResidents) Reports(string) ([]IndexedReport, error)   { return nil, nil }
func (noResidents) Checkins(string) ([]IndexedCheckin, error) { return nil, nil }
func (noResidents) Ratings(string) ([]IndexedRating, error)   { return nil, nil }
func (noResidents) Seen(string) (time.Time, error)            { return time.Time{}, nil }
func (noResidents) MarkSeen(string, time.Time) error          { return nil }

// changingReplica is fixedReplica whose activity's free seats the test
// sets, as a sync from the hub would change them.
type changingReplica struct {
	fixedReplica
	seats atomic.Uint32
}

func (r *changingReplica) Activities(string) ([]replica.Activity, error) {
	return []replica.Activity{{ID: "A1", Title: "社区义诊", Kind: "activity", Capacity: 10, SeatsLeft: r.seats.Load()}}, nil
}

func scriptedKiosk(t *testing.T) (*httptest.Server, *scriptedLog) {
	t.Helper()
	return scriptedKioskWith(t, fixedReplica{})
}

// scriptedKioskWith is scriptedKiosk over the given replica.
func scriptedKioskWith(t *testing.T, rep api.Replica) (*httptest.Server, *scriptedLog) {
	t.Helper()
	ui, err := NewUI()
	if err != nil {
		t.Fatal(err)
	}
	log := &scriptedLog{}
	edge := &api.API{Role: api.RoleKiosk, Log: log, Sync: offline{}, Replica: rep, UI: ui}
	k := &Handlers{Residents: noResidents{}, Kiosk: &Info{Device: "kiosk-t", Building: "B1", IdleTimeout: time.Hour}}
	if l, ok := rep.(AlarmLister); ok {
		k.Alarms = NewAlarmFeed(l)
	}
	srv := httptest.NewServer(serve(edge, k))
	t.Cleanup(srv.Close)
	if k.Alarms != nil {
		t.Cleanup(k.Alarms.Close) // before srv.Close, which waits for the streams
	}
	return srv, log
}

// alarmingReplica is fixedReplica with a smoke alarm in force in another
// building of the site.
type alarmingReplica struct{ fixedReplica }

func (alarmingReplica) Alarms() ([]AlarmOut, error) {
	return []AlarmOut{{ID: "s1:B3-smoke-1:smoke", Kind: "smoke", Severity: "critical", Building: "B3",
		Place: "3号楼 1单元 楼道烟感", Since: time.Now().UTC(), Active: true}}, nil
}

type uiPage struct {
	*browser.Page
	zh map[string]string
}

func openUI(t *testing.T, b *browser.Browser, url string, w, h int64) *uiPage {
	t.Helper()
	p := &uiPage{Page: b.Page(t, w, h), zh: catalogues(t)["zh-CN"]}
	p.Do(chromedp.Navigate(url))
	p.screen("start")
	t.Cleanup(func() {
		if problems := p.Problems(); len(problems) > 0 {
			t.Errorf("script errors or CSP violations: %q", problems)
		}
	})
	return p
}

func jsq(s string) string { b, _ := json.Marshal(s); return string(b) }

func (p *uiPage) screen(name string) {
	p.T.Helper()
	p.Wait(20*time.Second, "screen "+name, `document.body.dataset.ready === 'true' && !!document.querySelector('[data-screen=`+jsq(name)+`]')`)
}

func (p *uiPage) click(css string) {
	p.T.Helper()
	p.Click(css)
}

func (p *uiPage) textIs(css, want string) {
	p.T.Helper()
	p.Wait(20*time.Second, fmt.Sprintf("%s to read %q", css, want),
		`(() => { const e = document.querySelector(`+jsq(css)+`); return !!e && e.textContent.trim() === `+jsq(want)+`; })()`)
}

// Every failure a write can meet is told in the resident's words, the form
// stays as they filled it, and "done" shows only after the 201.
func TestUIShowsFailuresInResidentsLanguage(t *testing.T) {
	srv, log := scriptedKiosk(t)
	p := openUI(t, browser.New(t), srv.URL, 1080, 1920)
	zh := p.zh

	// Offline with nothing waiting is calm, not an error.
	p.Wait(20*time.Second, "the offline state", `document.getElementById('sync').dataset.state === 'offline'`)
	p.textIs("#sync-text", zh["sync.offline_none"])

	p.click("#go-identify")
	p.screen("identify")
	p.click("#rid-ok")
	p.textIs("#rid-msg", zh["id.empty"])
	for _, k := range []string{"4", "2"} {
		p.click(`.key[data-key="` + k + `"]`)
	}
	p.click("#rid-ok")
	p.screen("home")

	p.click(`[data-go="report"]`)
	p.click(`[data-category="noise"]`)
	p.Do(chromedp.SendKeys(chromedp.CSS("#rep-title"), "楼上深夜噪音"))
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("disk: %w", diskguard.ErrDiskReserve), "err.disk_full"}, // 507
		{outbox.ErrClosed, "err.unavailable"},                               // 503
		{errors.New("badger: i/o error"), "err.unavailable"},                // 503
		{&event.FieldError{Field: "title", Msg: "no"}, "err.field.title"},   // 400 the UI did not foresee
		{&event.FieldError{Field: "mood", Msg: "no"}, "err.bad_input"},      // 400 on a field it does not know
	} {
		log.set(c.err, nil)
		p.click("#rep-submit")
		p.textIs("#rep-msg", zh[c.want])
		if v := browser.Eval[string](p.Page, `document.getElementById('rep-title').value`); v != "楼上深夜噪音" {
			t.Fatalf("after %v the title reads %q; the form must keep what was typed", c.err, v)
		}
	}
	if n := len(log.bodies()); n != 0 {
		t.Fatalf("%d records stored by failed writes", n)
	}

	// A slow disk: "saving" while the edge has not answered, never "done".
	gate := make(chan struct{})
	log.set(nil, gate)
	p.click("#rep-submit")
	p.Wait(20*time.Second, "the busy button", `document.getElementById('rep-submit').getAttribute('aria-busy') === 'true'`)
	p.textIs("#rep-submit", zh["common.saving"])
	if done := browser.Eval[bool](p.Page, `!!document.querySelector('.big-ok') || !document.getElementById('rep-title')`); done {
		t.Fatal("the report shows as sent before the edge answered")
	}
	close(gate)
	p.textIs("#screen-title", zh["rep.done_title"])
	if b := log.bodies(); len(b) != 1 || b[0].(*event.Report).Title != "楼上深夜噪音" || b[0].(*event.Report).Resident != "42" {
		t.Fatalf("stored %+v", b)
	}
	// The kiosk shows what waits to be sent, calmly.
	p.Wait(20*time.Second, "one record pending", `document.getElementById('sync').dataset.pending === '1'`)
	p.textIs("#sync-text", strings.ReplaceAll(zh["sync.offline_saved"], "{n}", "1"))

	// The edge itself goes away: a write without an answer says that it may
	// not be saved, and the status bar says the kiosk is not answering.
	p.click(".done .actions button:last-child")
	p.screen("home")
	p.click(`[data-go="activities"]`)
	p.Wait(20*time.Second, "the activity", `!!document.querySelector('[data-id="A1"] button.primary')`)
	srv.CloseClientConnections()
	srv.Close()
	p.click(`[data-id="A1"] button.primary`)
	p.textIs("[data-screen=activities] .msg", zh["err.network_write"])
	p.Wait(20*time.Second, "the down state", `document.getElementById('sync').dataset.state === 'down'`)
	p.textIs("#sync-text", zh["sync.down"])
}

// The answer to a tap stays while the list under it refreshes: a sync
// that changes the activities must not wipe "not saved" before the
// resident has read it.
func TestUIKeepsTheAnswerToATapAcrossRefreshes(t *testing.T) {
	rep := &changingReplica{}
	rep.seats.Store(4)
	srv, log := scriptedKioskWith(t, rep)
	p := openUI(t, browser.New(t), srv.URL, 1080, 1920)
	zh := p.zh
	p.click("#go-identify")
	p.screen("identify")
	for _, k := range []string{"4", "2"} {
		p.click(`.key[data-key="` + k + `"]`)
	}
	p.click("#rid-ok")
	p.screen("home")
	p.click(`[data-go="activities"]`)
	p.Wait(20*time.Second, "the activity", `!!document.querySelector('[data-id="A1"] button.primary')`)

	log.set(outbox.ErrClosed, nil)
	p.click(`[data-id="A1"] button.primary`)
	p.textIs("[data-screen=activities] .msg", zh["err.unavailable"])
	rep.seats.Store(3) // the resident's standing poll sees the list change
	seats := strings.NewReplacer("{n}", "3", "{cap}", "10").Replace(zh["act.seats_left"])
	p.Wait(20*time.Second, "the refreshed list", `document.querySelector('[data-id="A1"]').textContent.includes(`+jsq(seats)+`)`)
	if got := browser.Eval[string](p.Page, `document.querySelector('[data-screen=activities] .msg').textContent.trim()`); got != zh["err.unavailable"] {
		t.Fatalf("after the list refreshed the message reads %q, want %q", got, zh["err.unavailable"])
	}
}

// At 1080×1920 and 1920×1080 every main screen fits the width, has touch
// targets of at least 44 px, names every control for screen readers, has
// no critical or serious axe-core finding (the kiosk offline, with a
// safety alarm shown), and the whole journey works from the keyboard alone.
func TestUILayoutLabelsAndKeyboard(t *testing.T) {
	srv, log := scriptedKioskWith(t, alarmingReplica{})
	b := browser.New(t)
	check := func(p *uiPage, where string) {
		t.Helper()
		var bad []string
		js := `(() => {
			const bad = [];
			const visible = (e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden';
			if (document.documentElement.scrollWidth > innerWidth + 1) bad.push('wider than the screen: ' + document.documentElement.scrollWidth);
			for (const e of document.querySelectorAll('button, [role=button], a[href]')) {
				if (!visible(e)) continue;
				const name = (e.getAttribute('aria-label') || e.textContent || '').trim();
				if (!name) bad.push('unnamed control ' + e.outerHTML.slice(0, 80));
				const r = e.getBoundingClientRect();
				if (r.width < 44 || r.height < 44) bad.push('small target ' + Math.round(r.width) + 'x' + Math.round(r.height) + ' ' + name);
			}
			for (const e of document.querySelectorAll('input, textarea, select')) {
				if (e.labels.length === 0 && !e.getAttribute('aria-label')) bad.push('unlabelled ' + e.outerHTML.slice(0, 80));
				if (e.type === 'radio') {
					const r = e.labels[0].getBoundingClientRect();
					if (r.width < 44 || r.height < 44) bad.push('small radio label ' + e.id);
				}
			}
			if (!document.querySelector('main h1#screen-title')) bad.push('no screen title');
			return bad;
		})()`
		bad = browser.Eval[[]string](p.Page, js)
		if len(bad) > 0 {
			t.Errorf("%s: %q", where, bad)
		}
		p.CheckAccessible(where)
	}
	for _, size := range [][2]int64{{1080, 1920}, {1920, 1080}} {
		p := openUI(t, b, srv.URL, size[0], size[1])
		at := fmt.Sprintf("%dx%d", size[0], size[1])
		// The safety alarm fills the screen until dismissed, then stays as
		// a banner on every screen.
		p.Wait(20*time.Second, "the full-screen alert", `!document.getElementById('alert').hidden`)
		p.click("#alert .alert-ok")
		p.Wait(20*time.Second, "the alarm banner", `document.getElementById('alert').hidden && !document.getElementById('alarm').hidden`)
		check(p, at+" start")
		p.click("#go-identify")
		p.screen("identify")
		check(p, at+" identify")
		p.click(".nav-back")
		p.screen("start")
		p.Do(chromedp.KeyEvent("7007\r")) // a card, no field focused
		p.screen("home")
		check(p, at+" home")
		for _, s := range []struct{ tile, screen string }{{"activities", "activities"}, {"mine", "mine"}, {"rate", "rate"}, {"notices", "notices"}} {
			p.click(`[data-go="` + s.tile + `"]`)
			p.screen(s.screen)
			check(p, at+" "+s.screen)
			p.click(".nav-back")
			p.screen("home")
		}
		p.click(`[data-go="report"]`)
		p.screen("report")
		check(p, at+" report categories")
		p.click(`[data-category="facilities"]`)
		check(p, at+" report form")
		p.click(".nav-exit")
		p.screen("start")
	}
	// Notices: the alarm first, marked as one.
	p := openUI(t, b, srv.URL, 1080, 1920)
	p.Wait(20*time.Second, "the full-screen alert", `!document.getElementById('alert').hidden`)
	p.click("#alert .alert-ok")
	p.click(`[data-go="notices"]`)
	p.screen("notices")
	if first := browser.Eval[string](p.Page, `document.querySelector('#notice-list .notice').dataset.alarm`); first != "true" {
		t.Errorf("first notice alarm=%s, want the alarm first", first)
	}

	// Keyboard only: Tab to a control, Enter to use it.
	tabTo := func(css string) {
		t.Helper()
		for range 40 {
			if browser.Eval[bool](p.Page, `document.activeElement === document.querySelector(`+jsq(css)+`)`) {
				return
			}
			p.Do(chromedp.KeyEvent("\t"))
		}
		t.Fatalf("Tab never reached %s", css)
	}
	p.Do(chromedp.KeyEvent("\x1b")) // Escape: back to the start
	p.screen("start")
	tabTo("#go-identify")
	p.Do(chromedp.KeyEvent("\r"))
	p.screen("identify")
	tabTo("#rid")
	p.Do(chromedp.KeyEvent("R77\r"))
	p.screen("home")
	tabTo(`[data-go="activities"]`)
	p.Do(chromedp.KeyEvent("\r"))
	p.screen("activities")
	tabTo(`[data-id="A1"] button.primary`)
	p.Do(chromedp.KeyEvent("\r"))
	p.Wait(20*time.Second, "the check-in answer", `document.querySelector('[data-id="A1"]').dataset.result === 'recorded'`)
	found := false
	for _, body := range log.bodies() {
		if c, ok := body.(*event.Checkin); ok && c.Resident == "R77" && c.Activity == "A1" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no check-in of R77 stored: %+v", log.bodies())
	}
}

// The start screen's weight on the wire, as the browser counts it: every
// response (headers included) up to the first polls.
func TestUIStartScreenTransfer(t *testing.T) {
	srv, _ := scriptedKiosk(t)
	p := openUI(t, browser.New(t), srv.URL, 1920, 1080)
	p.Wait(20*time.Second, "the first sync answer", `document.getElementById('sync').dataset.state !== 'unknown'`)
	bytes, n := p.Transferred()
	t.Logf("start screen: %d bytes in %d responses", bytes, n)
	if n < 5 || bytes > 100_000 {
		t.Fatalf("start screen took %d bytes in %d responses; want at least the 4 files and an API answer, under 100 KB", bytes, n)
	}
}

// A kiosk the hub no longer takes as itself says so in its status bar,
// in the resident's language.
func TestUIShowsIdentityReplacedOrRevoked(t *testing.T) {
	ui, err := NewUI()
	if err != nil {
		t.Fatal(err)
	}
	var state atomic.Pointer[string]
	ok := "ok"
	state.Store(&ok)
	edge := &api.API{Role: api.RoleKiosk, Log: &scriptedLog{}, Sync: offline{}, Replica: fixedReplica{}, UI: ui,
		Identity: func() string { return *state.Load() }}
	srv := httptest.NewServer(serve(edge, &Handlers{Residents: noResidents{}, Kiosk: &Info{Device: "kiosk-t", Building: "B1", IdleTimeout: time.Hour}}))
	t.Cleanup(srv.Close)
	p := openUI(t, browser.New(t), srv.URL, 1080, 1920)
	p.textIs("#sync-text", p.zh["sync.offline_none"])
	for _, s := range []string{"replaced", "revoked"} {
		state.Store(&s)
		p.textIs("#sync-text", p.zh["sync.identity_"+s])
		p.Wait(20*time.Second, "the down state", `document.getElementById('sync').dataset.state === 'down'`)
	}
}
