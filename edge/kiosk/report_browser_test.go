package kiosk

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"linli/edge/api"
	"linli/edge/outbox"
	"linli/edge/replica"
	"linli/shared/event"
	"linli/shared/merge"
	"linli/shared/test/browser"
)

// The report flow on a kiosk with the site's plan, in a real browser
// against the API on a real outbox: what a resident does by touch alone,
// with no keyboard event at all.

// switchSync is a hub session the test connects and drops.
type switchSync struct{ up atomic.Bool }

func (s *switchSync) Connected() bool     { return s.up.Load() }
func (s *switchSync) LastSync() time.Time { return time.Time{} }

// syncedReplica is fixedReplica whose every report is back from the hub
// (synced), and whose activity the resident attended.
type syncedReplica struct{ fixedReplica }

func (syncedReplica) Report(id string) (replica.Report, bool, error) {
	return replica.Report{ReportView: merge.ReportView{ID: id, Category: "fire_safety", Title: "x", Building: "B1", Status: "submitted"},
		Synced: true, Updated: time.Now().UTC()}, true, nil
}

func (syncedReplica) Activities(string) ([]replica.Activity, error) {
	return []replica.Activity{{ID: "A1", Title: "社区义诊", Kind: "activity", Capacity: 10, SeatsLeft: 4, Status: "confirmed", Attended: true}}, nil
}

// planKiosk is a kiosk of building B1 with the site's plan, on a real
// outbox.
func planKiosk(t *testing.T, rep api.Replica, sync api.Sync) (string, *outbox.Log) {
	t.Helper()
	ui, err := NewUI()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := LoadPlan("../../configs/site-xiangyang.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, ob := newServer(t, api.RoleKiosk, func(a *Handlers) {
		a.UI, a.Replica, a.Residents, a.Sync = ui, rep, noResidents{}, sync
		a.Kiosk = &Info{Device: "kiosk-t", Site: plan.Site, Building: "B1", IdleTimeout: time.Hour, Plan: plan}
	})
	return srv.URL, ob
}

// noKeys counts every keyboard event the page sees from now on.
func noKeys(p *uiPage) {
	p.T.Helper()
	browser.Eval[bool](p.Page, `(() => { window.keyEvents = 0;
		for (const k of ['keydown', 'keypress', 'keyup']) document.addEventListener(k, () => window.keyEvents++, true);
		return true; })()`)
}

// oskType types pinyin on the on-screen keyboard and taps the candidate
// ch, as a resident does.
func oskType(p *uiPage, pinyin, ch string) {
	p.T.Helper()
	for _, k := range pinyin {
		p.click(`#osk [data-osk-key="` + string(k) + `"]`)
	}
	p.Wait(20*time.Second, "candidate "+ch, `[...document.querySelectorAll('#osk .cand')].some((b) => b.textContent === `+jsq(ch)+`)`)
	i := browser.Eval[int](p.Page, `[...document.querySelectorAll('#osk .cand')].findIndex((b) => b.textContent === `+jsq(ch)+`)`)
	p.click(fmt.Sprintf(`#osk [data-cand="%d"]`, i))
}

func lastReport(t *testing.T, ob *outbox.Log) *event.Report {
	t.Helper()
	last := ob.Stats().LastSeq
	if last == 0 {
		t.Fatal("nothing stored")
	}
	evs, err := ob.Read(last-1, 1, 1<<20)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read the stored event: %v", err)
	}
	b, err := evs[0].Decode()
	if err != nil {
		t.Fatal(err)
	}
	r, ok := b.(*event.Report)
	if !ok {
		t.Fatalf("last event is %T, want a report", b)
	}
	return r
}

// A whole report by taps alone: a category, one of its common problems,
// another building, the unit on the keypad and details in Chinese on the
// on-screen keyboard (pinyin and candidates). The kiosk stores exactly
// what was tapped, the unit as the site writes it, and the page saw no
// keyboard event. Each new screen passes axe-core.
func TestUIFilesAReportByTouchAlone(t *testing.T) {
	url, ob := planKiosk(t, fixedReplica{}, offline{})
	b := browser.New(t)
	for _, size := range [][2]int64{{1080, 1920}, {1920, 1080}} {
		at := fmt.Sprintf("%dx%d", size[0], size[1])
		p := openUI(t, b, url, size[0], size[1])
		noKeys(p)
		before := ob.Stats().LastSeq

		p.click(`[data-go="report"]`) // 1
		p.screen("report")
		p.click(`[data-category="fire_safety"]`) // 2
		p.Wait(20*time.Second, "the common problems", `!!document.querySelector('[data-choice]')`)
		p.CheckAccessible(at + " report problems")
		p.textIs(`[data-choice="1"]`, "电动车楼内充电")
		p.click(`[data-choice="1"]`) // 3
		p.Wait(20*time.Second, "the report form", `!!document.getElementById('rep-submit')`)
		if pressed := browser.Eval[string](p.Page, `document.querySelector('[data-building][aria-pressed="true"]').dataset.building`); pressed != "B1" {
			t.Fatalf("%s: building preselected %q, want B1 (the kiosk's)", at, pressed)
		}
		if n := browser.Eval[int](p.Page, `document.querySelectorAll('[data-building]').length`); n != 6 {
			t.Fatalf("%s: %d buildings offered, want the plan's 6", at, n)
		}
		p.CheckAccessible(at + " report form")
		p.click(`[data-building="B3"]`) // 4
		for _, k := range []string{"1", "-", "4", "0", "2"} {
			p.click(`[data-ukey="` + k + `"]`)
		}
		p.click("#rep-desc")
		p.Wait(20*time.Second, "the on-screen keyboard", `!document.getElementById('osk').hidden`)
		p.CheckAccessible(at + " report form with the on-screen keyboard")
		oskType(p, "lou", "楼")
		oskType(p, "dao", "道")
		p.click(`#osk [data-osk-key="3"]`)
		oskType(p, "ceng", "层")
		p.textIs("#osk-buf", "")
		if v := browser.Eval[string](p.Page, `document.getElementById('rep-desc').value`); v != "楼道3层" {
			t.Fatalf("%s: details read %q, want 楼道3层", at, v)
		}
		p.click("#osk-done")
		p.Wait(20*time.Second, "the keyboard to close", `document.getElementById('osk').hidden`)
		p.click("#rep-submit") // 5
		p.Wait(20*time.Second, "the done screen", `!!document.getElementById('rep-headline')`)
		p.CheckAccessible(at + " report done")

		if keys := browser.Eval[int](p.Page, `window.keyEvents`); keys != 0 {
			t.Fatalf("%s: the page saw %d keyboard events; the report must need none", at, keys)
		}
		if ob.Stats().LastSeq != before+1 {
			t.Fatalf("%s: %d events stored, want 1", at, ob.Stats().LastSeq-before)
		}
		r := lastReport(t, ob)
		if r.Category != "fire_safety" || r.Title != "电动车楼内充电" || r.Building != "B3" || r.Unit != "1-402" || r.Description != "楼道3层" {
			t.Fatalf("%s: stored %+v", at, r)
		}
	}
}

// "Other" leads to free text on the on-screen keyboard, in English too.
func TestUIReportOtherByTouch(t *testing.T) {
	url, ob := planKiosk(t, fixedReplica{}, offline{})
	p := openUI(t, browser.New(t), url, 1080, 1920)
	noKeys(p)
	p.click("#lang")
	// The switch loads the English strings, then draws the screen again:
	// a tap before that lands wherever the new layout puts another button
	// (under load it once opened "Who are you?" instead of the report).
	p.Wait(20*time.Second, "the English screen", `document.documentElement.lang === 'en'`)
	p.click(`[data-go="report"]`)
	p.screen("report")
	p.click(`[data-category="noise"]`)
	p.click("#rep-other")
	p.click("#rep-title")
	p.Wait(20*time.Second, "the on-screen keyboard", `!document.getElementById('osk').hidden`)
	p.click(`#osk [data-osk-key="mode"]`) // letters, not pinyin
	for _, k := range "dogs" {
		p.click(`#osk [data-osk-key="` + string(k) + `"]`)
	}
	p.click(`#osk [data-osk-key="space"]`)
	p.click(`#osk [data-osk-key="mode"]`)
	oskType(p, "wan", "晚")
	p.click(`#osk [data-osk-key="del"]`) // takes back 晚
	oskType(p, "ye", "夜")
	p.click("#osk-done")
	p.click("#rep-submit")
	p.Wait(20*time.Second, "the done screen", `!!document.getElementById('rep-headline')`)
	if keys := browser.Eval[int](p.Page, `window.keyEvents`); keys != 0 {
		t.Fatalf("the page saw %d keyboard events", keys)
	}
	if r := lastReport(t, ob); r.Title != "dogs 夜" || r.Building != "B1" || r.Category != "noise" {
		t.Fatalf("stored %+v", r)
	}
}

// In landscape the report form, with its button, fits the screen: a
// resident sees everything there is to tap without scrolling.
func TestUIReportFormFitsLandscape(t *testing.T) {
	url, _ := planKiosk(t, fixedReplica{}, offline{})
	b := browser.New(t)
	for _, size := range [][2]int64{{1920, 1080}, {1366, 768}} {
		p := openUI(t, b, url, size[0], size[1])
		p.click(`[data-go="report"]`)
		p.click(`[data-category="fire_safety"]`)
		p.click(`[data-choice="0"]`)
		p.Wait(20*time.Second, "the report form", `!!document.getElementById('rep-submit')`)
		bottom := browser.Eval[float64](p.Page, `document.getElementById('rep-submit').getBoundingClientRect().bottom`)
		height := browser.Eval[float64](p.Page, `innerHeight`)
		if bottom > height {
			t.Errorf("%dx%d: the send button ends at %.0f px, below the screen's %.0f", size[0], size[1], bottom, height)
		}
	}
}

// The small things a resident met on the way.
func TestUIReportSmallDefects(t *testing.T) {
	sync := &switchSync{}
	url, _ := planKiosk(t, syncedReplica{}, sync)
	p := openUI(t, browser.New(t), url, 1080, 1920)
	zh := p.zh

	// The welcome goes with the screen it greeted on, not over the next
	// screen's fields.
	p.click("#go-identify")
	for _, k := range []string{"4", "2"} {
		p.click(`.key[data-key="` + k + `"]`)
	}
	p.click("#rid-ok")
	p.screen("home")
	p.Wait(5*time.Second, "the welcome", `!document.getElementById('toast').hidden`)
	p.click(`[data-go="report"]`)
	p.screen("report")
	if shown := browser.Eval[bool](p.Page, `!document.getElementById('toast').hidden`); shown {
		t.Error("the welcome toast is still up on the report screen")
	}

	// "Saved on this kiosk" only until the hub has it.
	p.click(`[data-category="elevator"]`)
	p.click(`[data-choice="0"]`)
	p.click("#rep-submit")
	p.textIs("#rep-headline", zh["rep.done_synced"])

	// The rating's "pick a score" goes once a score is picked.
	p.click(".done .actions button:last-child")
	p.screen("home")
	p.click(`[data-go="rate"]`)
	p.click(`[data-id="A1"] button.primary`)
	p.click("#rate-submit")
	p.textIs("#rate-msg", zh["rate.need_score"])
	p.click(`label[for="score-4"]`)
	p.textIs("#rate-msg", "")

	// The offline note on "my reports" follows the connection.
	p.click(".nav-back")
	p.screen("home")
	p.click(`[data-go="mine"]`)
	p.screen("mine")
	p.Wait(20*time.Second, "the offline note", `!!document.querySelector('[data-offline-note]:not([hidden])')`)
	sync.up.Store(true)
	p.Wait(20*time.Second, "the offline note to go once connected", `!document.querySelector('[data-offline-note]:not([hidden])')`)
	if !strings.Contains(browser.Eval[string](p.Page, `document.getElementById('sync').dataset.state`), "online") {
		t.Fatal("the sync state is not online")
	}
}
