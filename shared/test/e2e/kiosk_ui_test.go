package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"linli/shared/test/browser"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// The kiosk UI, driven in headless Chromium against the real binaries. The
// tests know the UI only as a browser does: through its pages, the DOM
// hooks it keeps stable (ids, data-* attributes) and its string catalogues,
// which they read from the source tree to check what a resident is shown.

// uiWait bounds every wait for the page; the machine is shared with other
// test processes, so it is generous.
const uiWait = 30 * time.Second

func catalogue(t *testing.T, lang string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testkit.Root(), "edge", "kiosk", "web", "i18n", lang+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]string
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("catalogue %s: %v", lang, err)
	}
	return c
}

// fill replaces {name} placeholders the way the UI does.
func fill(s string, kv ...any) string {
	for i := 0; i+1 < len(kv); i += 2 {
		s = strings.ReplaceAll(s, "{"+kv[i].(string)+"}", fmt.Sprint(kv[i+1]))
	}
	return s
}

type kioskPage struct {
	*browser.Page
	zh, en map[string]string
}

// openKiosk loads the kiosk UI at url in a width×height tab and waits for
// the start screen.
func openKiosk(t *testing.T, b *browser.Browser, url string, width, height int64) *kioskPage {
	t.Helper()
	k := &kioskPage{Page: b.Page(t, width, height), zh: catalogue(t, "zh-CN"), en: catalogue(t, "en")}
	k.Do(chromedp.Navigate(url))
	k.waitScreen("start")
	t.Cleanup(func() {
		if p := k.Problems(); len(p) > 0 {
			t.Errorf("the page had script errors or CSP violations: %q", p)
		}
	})
	return k
}

func js(s string) string { b, _ := json.Marshal(s); return string(b) }

func (k *kioskPage) waitScreen(name string) {
	k.T.Helper()
	k.Wait(uiWait, "screen "+name, `document.body.dataset.ready === 'true' && !!document.querySelector('[data-screen=`+js(name)+`]')`)
}

func (k *kioskPage) click(css string) {
	k.T.Helper()
	k.Click(css)
}

func (k *kioskPage) text(css string) string {
	k.T.Helper()
	return browser.Eval[string](k.Page, `(() => { const e = document.querySelector(`+js(css)+`); return e ? e.textContent : ''; })()`)
}

// waitText waits until the element's text contains want.
func (k *kioskPage) waitText(css, want string) {
	k.T.Helper()
	k.Wait(uiWait, fmt.Sprintf("%s to show %q", css, want),
		`(() => { const e = document.querySelector(`+js(css)+`); return !!e && e.textContent.includes(`+js(want)+`); })()`)
}

// typeField types into a form field as a person would (key by key).
func (k *kioskPage) typeField(css, s string) {
	k.T.Helper()
	k.Do(chromedp.Click(chromedp.CSS(css)), chromedp.SendKeys(chromedp.CSS(css), s))
}

// card types a resident number and Enter with no field focused, as a card
// reader acting as a keyboard does.
func (k *kioskPage) card(number string) {
	k.T.Helper()
	focused := browser.Eval[string](k.Page, `(() => { document.activeElement && document.activeElement.blur(); const a = document.activeElement; return a ? a.tagName : ''; })()`)
	if focused != "BODY" {
		k.T.Fatalf("focus is on %s, want nothing focused before the card read", focused)
	}
	k.Do(chromedp.KeyEvent(number + "\r"))
}

func (k *kioskPage) syncState() (state string, pending int) {
	k.T.Helper()
	v := browser.Eval[[]string](k.Page, `[document.getElementById('sync').dataset.state, document.getElementById('sync').dataset.pending]`)
	n, _ := strconv.Atoi(v[1])
	return v[0], n
}

func (k *kioskPage) home() {
	k.T.Helper()
	if browser.Eval[string](k.Page, `document.querySelector('[data-screen]').dataset.screen`) == "home" {
		return
	}
	// The button's own handler: on a filled report form the on-screen
	// keyboard lies over the page and takes a click at the button's place.
	k.Do(chromedp.Evaluate[chromedp.Void](`document.querySelector('.nav-back').click()`))
	k.waitScreen("home")
}

// kioskSite is a hub and one kiosk edge of site s1 in building B1.
type kioskSite struct {
	hub   *hubProc
	kiosk *edgeProc
}

func startKioskSite(t *testing.T, id string, extra ...string) *kioskSite {
	t.Helper()
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k := startEnrolledEdge(t, h, id, "s1", "kiosk", append([]string{"--building", "B1"}, extra...)...)
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return k.sync(t).Connected, id + " not connected" })
	return &kioskSite{hub: h, kiosk: k}
}

// activity creates an activity at the hub and waits until the kiosk holds
// it with its share of seats (for a capacity large enough to share).
func (s *kioskSite) activity(t *testing.T, id, title, kind string, capacity int, shared bool) {
	t.Helper()
	if code := s.hub.do(t, "POST", "/api/v1/activities", map[string]any{"id": id, "title": title, "kind": kind, "site": "s1",
		"start": time.Now().Add(time.Hour).Format(time.RFC3339), "end": time.Now().Add(3 * time.Hour).Format(time.RFC3339),
		"capacity": capacity}, nil); code != 201 {
		t.Fatalf("create activity %s: %d", id, code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var a activityState
		s.hub.do(t, "GET", "/api/v1/activities/"+id, nil, &a)
		_, ok := s.kiosk.activity(t, id, "")
		return ok && (!shared || len(a.Kiosks) == 1), fmt.Sprintf("kiosk has %s: %v; shares %+v", id, ok, a.Kiosks)
	})
}

func (s *kioskSite) notice(t *testing.T, title, body, category string) {
	t.Helper()
	if code := s.hub.do(t, "POST", "/api/v1/notices", map[string]string{"site": "s1", "title": title, "body": body,
		"category": category, "expires": time.Now().Add(72 * time.Hour).Format(time.RFC3339)}, nil); code != 201 {
		t.Fatalf("publish notice: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var list []kioskNotice
		s.kiosk.do(t, "GET", "/api/v1/notices", nil, &list)
		return slices.ContainsFunc(list, func(n kioskNotice) bool { return n.Title == title }), "kiosk lacks notice " + title
	})
}

// report files a report at the kiosk's API (a neighbour, not the browser)
// and waits until the kiosk has it back from the hub, synced.
func (s *kioskSite) report(t *testing.T, resident, category, title string) string {
	t.Helper()
	var c created
	if code := s.kiosk.do(t, "POST", "/api/v1/reports", map[string]string{"category": category, "title": title,
		"building": "B1", "unit": "2-101", "resident": resident}, &c); code != 201 {
		t.Fatalf("file report: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var r kioskReport
		code := s.kiosk.do(t, "GET", "/api/v1/reports/"+c.ID, nil, &r)
		return code == 200 && r.Synced, fmt.Sprintf("report %s on the kiosk: %d %+v", c.ID, code, r)
	})
	return c.ID
}

// A resident identifies with a card read (digits and Enter, nothing
// focused), checks in, says "me too" to a suggested duplicate, files a
// report, rates and reads the notices — with the hub up, and again with
// the hub down, when the kiosk answers from its share of seats and keeps
// everything on its disk. When the hub returns, every record is at the hub
// exactly as the kiosk showed it. A move up from the waitlist reaches the
// resident's screen on its own.
func TestKioskResidentJourney(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s := startKioskSite(t, "kiosk-ui", "--idle-timeout", "10m")
	s.activity(t, "A1", "社区义诊", "activity", 20, true)
	s.activity(t, "V1", "楼道清洁志愿服务", "volunteer", 10, true)
	s.activity(t, "C1", "剪纸非遗课", "culture", 1, false)
	s.notice(t, "停水通知", "周六 9:00-12:00 停水检修", "announcement")
	s.notice(t, "消防通道禁止停车", "请勿在消防通道停放车辆", "safety")
	neighbour := s.report(t, "R-N1", "elevator", "电梯异响")
	// Another resident takes C1's only seat first (the hub decides it: a
	// one-seat activity leaves the kiosk no share).
	var other created
	if code := s.kiosk.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R-N2", "activity": "C1"}, &other); code != 201 {
		t.Fatalf("neighbour check-in: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var a activityState
		s.hub.do(t, "GET", "/api/v1/activities/C1", nil, &a)
		return slices.Contains(a.Confirmed, "R-N2"), fmt.Sprintf("C1 at the hub: %+v", a)
	})
	setup := time.Since(began)

	b := browser.New(t)
	for _, f := range browser.Flags {
		if !slices.Contains(b.Args(), f) {
			t.Fatalf("browser started without %s: %q", f, b.Args())
		}
	}
	k := openKiosk(t, b, s.kiosk.URL, 1080, 1920)
	const resident = "20240001"
	zh := k.zh
	k.Wait(uiWait, "online state", `document.getElementById('sync').dataset.state === 'online'`)

	// Identify with the card reader, no field focused.
	k.card(resident)
	k.waitScreen("home")
	if got, want := k.text("#screen-title"), fill(zh["home.title"], "who", "2•••••01"); got != want {
		t.Fatalf("greeting %q, want %q", got, want)
	}

	// Check in: confirmed from the kiosk's share; waitlisted for C1.
	k.click(`[data-go="activities"]`)
	k.waitScreen("activities")
	k.click(`[data-id="A1"] button.primary`)
	k.Wait(uiWait, "A1 confirmed", `document.querySelector('[data-id="A1"]').dataset.result === 'confirmed'`)
	k.waitText(`[data-id="A1"] .badge.st-confirmed`, zh["act.status.confirmed"])
	k.click(`[data-id="C1"] button.primary`)
	k.Wait(uiWait, "C1 waitlisted", `document.querySelector('[data-id="C1"]').dataset.result === 'waitlisted'`)
	k.waitText(`[data-id="C1"] .result`, fill(zh["act.result.waitlisted"], "title", "剪纸非遗课"))

	// The neighbour leaves C1: the hub moves this resident up, and the
	// screen says so without anyone touching it.
	if code := s.kiosk.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R-N2", "activity": "C1", "action": "out"}, nil); code != 201 {
		t.Fatalf("neighbour check-out: %d", code)
	}
	// (The toast says so for 8 s; the card keeps saying it.)
	k.waitText(`[data-id="C1"] .good`, zh["act.moved_up_note"])
	k.Wait(uiWait, "C1 confirmed on the card", `document.querySelector('[data-id="C1"]').dataset.status === 'confirmed'`)

	// Report: the elevator problem is already open in B1, so the kiosk
	// suggests it and the resident says "me too" instead of filing again.
	k.home()
	k.click(`[data-go="report"]`)
	k.waitScreen("report")
	k.click(`[data-category="elevator"]`)
	k.waitText("#dups-title", fill(zh["rep.dups"], "n", 1))
	k.click(`[data-vote="` + neighbour + `"]`)
	k.waitText("#screen-title", zh["rep.voted_title"])
	k.click(".done .actions button:last-child")
	k.waitScreen("home")

	// A new report: fire safety, not anonymous.
	_ = fileReport(k, "fire_safety", "楼道堆放杂物", "三楼楼道堆满纸箱", false)

	// Rate the activity attended.
	rate(k, "A1", 4, "很好")

	// Notices: safety first.
	readNotices(k, "消防通道禁止停车", "停水通知")

	// The hub goes away; the kiosk keeps working.
	s.hub.Kill()
	k.Wait(uiWait, "offline state", `document.getElementById('sync').dataset.state === 'offline'`)
	k.home()
	k.click(`[data-go="activities"]`)
	k.waitScreen("activities")
	k.waitText(".note.calm", zh["offline.last_synced"])
	k.click(`[data-id="V1"] button.primary`)
	k.Wait(uiWait, "V1 confirmed offline", `document.querySelector('[data-id="V1"]').dataset.result === 'confirmed'`)
	k.waitText(`[data-id="V1"] .note`, zh["act.unsynced"])
	k.home()
	offline := fileReport(k, "noise", "夜间装修噪音", "", false)
	k.waitText("#rep-status", zh["rep.not_synced"])
	k.click(".done .actions button:last-child")
	rate(k, "C1", 5, "")
	readNotices(k, "消防通道禁止停车", "停水通知")
	// Waiting records are shown as the normal state they are.
	k.Wait(uiWait, "3 records pending", `+document.getElementById('sync').dataset.pending >= 3`)
	state, pending := k.syncState()
	if want := fill(zh["sync.offline_saved"], "n", pending); state != "offline" || k.text("#sync-text") != want {
		t.Fatalf("status bar %s %q, want offline %q", state, k.text("#sync-text"), want)
	}
	k.click(`[data-go="mine"]`)
	k.waitScreen("mine")
	k.Wait(uiWait, "the offline report, not synced", `!!document.querySelector('[data-id="`+offline+`"] .status[data-synced="false"]')`)
	if n := browser.Eval[int](k.Page, `document.querySelectorAll('#mine-list .card').length`); n != 3 {
		t.Fatalf("my reports lists %d, want 3 (two filed, one me too)", n)
	}

	// The hub returns: everything the kiosk kept reaches it, exactly once.
	s.hub.Restart()
	testkit.WaitHTTP(t, s.hub.URL+"/healthz", 20*time.Second)
	k.Wait(uiWait, "online, nothing pending", `document.getElementById('sync').dataset.state === 'online' && document.getElementById('sync').dataset.pending === '0'`)
	k.home()
	k.click(`[data-go="mine"]`)
	k.Wait(uiWait, "the offline report, synced", `!!document.querySelector('[data-id="`+offline+`"] .status[data-synced="true"]')`)

	evs, err := testkit.FetchEvents(t.Context(), s.hub.URL, s.hub.token(t), "kiosk-ui")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		b := e.Body
		if b["resident"] != resident {
			continue
		}
		switch e.Kind {
		case "checkin":
			seen[fmt.Sprintf("checkin %v %v %v", b["activity"], b["action"], b["status"])]++
		case "report":
			seen[fmt.Sprintf("report %v %v", b["category"], b["title"])]++
		case "vote":
			seen[fmt.Sprintf("vote %v", b["report"])]++
		case "rating":
			seen[fmt.Sprintf("rating %v %v", b["target"], b["score"])]++
		}
	}
	want := map[string]int{
		"checkin A1 in confirmed": 1, "checkin C1 in waitlisted": 1, "checkin V1 in confirmed": 1,
		"report fire_safety 楼道堆放杂物": 1, "report noise 夜间装修噪音": 1,
		"vote " + neighbour: 1, "rating A1 4": 1, "rating C1 5": 1,
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("the hub holds the resident's records %v, want exactly %v", seen, want)
	}
	for _, id := range []string{"V1", "C1", "A1"} {
		var a activityState
		s.hub.do(t, "GET", "/api/v1/activities/"+id, nil, &a)
		if !slices.Contains(a.Confirmed, resident) {
			t.Errorf("hub activity %s confirmed %v, want %s", id, a.Confirmed, resident)
		}
	}
	var rep struct {
		Status   string `json:"status"`
		Category string `json:"category"`
	}
	if code := s.hub.do(t, "GET", "/api/v1/reports/"+offline, nil, &rep); code != 200 || rep.Category != "noise" {
		t.Fatalf("hub report %s: %d %+v", offline, code, rep)
	}
	t.Logf("setup %v; the journey, hub up and down, %v", setup, time.Since(began)-setup)
}

// fileReport files a report from the home screen and returns its id as the
// done screen shows it.
func fileReport(k *kioskPage, category, title, details string, anonymous bool) string {
	k.T.Helper()
	k.waitScreen("home")
	k.click(`[data-go="report"]`)
	k.waitScreen("report")
	k.click(`[data-category="` + category + `"]`)
	k.Wait(uiWait, "the report form", `!!document.getElementById('rep-title')`)
	if got := browser.Eval[string](k.Page, `document.getElementById('rep-building').value`); got != "B1" {
		k.T.Fatalf("building prefilled %q, want B1 (the kiosk's)", got)
	}
	k.typeField("#rep-unit", "3-302")
	k.typeField("#rep-title", title)
	if details != "" {
		k.typeField("#rep-desc", details)
	}
	if anonymous {
		k.click("#rep-anon")
	}
	k.click("#rep-submit")
	k.waitText("#screen-title", k.zh["rep.done_title"])
	// The screen shows the short number residents read out; the report's
	// id stays on the element for the API.
	if n := k.text("#rep-number"); !regexp.MustCompile(`[A-Z0-9]+-\d{4}`).MatchString(n) {
		k.T.Fatalf("done screen shows no report number: %q", k.text(".done"))
	}
	return browser.Eval[string](k.Page, `document.getElementById('rep-number').dataset.id`)
}

func rate(k *kioskPage, target string, score int, comment string) {
	k.T.Helper()
	k.home()
	k.click(`[data-go="rate"]`)
	k.waitScreen("rate")
	k.click(`[data-id="` + target + `"] button.primary`)
	k.click(fmt.Sprintf(`label[for="score-%d"]`, score))
	if comment != "" {
		k.typeField("#rate-comment", comment)
	}
	// The rating form is reached only with a confirmed activity or a
	// resolved report, which the scripted kiosk test has not: checked here.
	k.CheckAccessible("the rating form for " + target)
	k.click("#rate-submit")
	k.waitText("#rate-done", k.zh["rate.thanks"])
	k.CheckAccessible("the rating sent for " + target)
	k.click(".done .actions button")
	k.waitScreen("home")
}

func readNotices(k *kioskPage, titles ...string) {
	k.T.Helper()
	k.click(`[data-go="notices"]`)
	k.waitScreen("notices")
	k.Wait(uiWait, "notices listed", fmt.Sprintf(`document.querySelectorAll('#notice-list .notice').length >= %d`, len(titles)))
	got := browser.Eval[[]string](k.Page, `[...document.querySelectorAll('#notice-list .notice h3')].map(e => e.textContent)`)
	if len(got) < len(titles) || !slices.Equal(got[:len(titles)], titles) {
		k.T.Fatalf("notices in order %q, want %q first", got, titles)
	}
	k.home()
}

// TestKioskScreenshots saves a PNG of each main screen, in portrait and
// landscape where both matter, into the folder LINLI_SCREENSHOTS names
// (`make screenshots` sets edge/kiosk/screenshots). It needs that variable
// and skips without it: it documents the UI, and the other kiosk tests
// check it.
func TestKioskScreenshots(t *testing.T) {
	dir := os.Getenv("LINLI_SCREENSHOTS")
	if dir == "" {
		t.Skip("LINLI_SCREENSHOTS is not set (run `make screenshots`)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startKioskSite(t, "kiosk-b1")
	s.activity(t, "A1", "社区义诊：血压血糖免费测", "activity", 20, true)
	s.activity(t, "V1", "楼道清洁志愿服务", "volunteer", 10, true)
	s.activity(t, "C1", "剪纸非遗课", "culture", 1, false)
	s.activity(t, "A2", "重阳节敬老茶话会", "activity", 0, false)
	s.notice(t, "停水通知", "因管道检修，本周六 9:00–12:00 B1、B2 栋停水，请提前储水。", "announcement")
	s.notice(t, "2024年第三季度公共收益公示", "广告位与停车场收益共计 86,420 元，明细见居委会公告栏。", "finance")
	s.notice(t, "第十届业主委员会选举公示", "候选人名单已公示，投票时间为下周一至周三。", "election")
	s.notice(t, "消防通道禁止停车", "消防通道是生命通道，请勿占用。", "safety")
	gw := startEdge(t, "gw-b3", "s1", "gateway", s.hub.MQTT, "--building", "B3")
	if code := gw.do(t, "POST", "/api/v1/readings", map[string]any{"sensor": "B3-smoke-1", "kind": "smoke", "value": 1}, nil); code != 201 {
		t.Fatalf("smoke reading: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var as []any
		s.kiosk.do(t, "GET", "/api/v1/alarms", nil, &as)
		return len(as) == 1, "no alarm on the kiosk yet"
	})
	s.report(t, "R-N1", "elevator", "3号电梯运行时有异响")
	lamp := s.report(t, "20240001", "facilities", "楼道感应灯不亮")
	for _, st := range []string{"accepted", "resolved"} {
		if code := s.hub.do(t, "PATCH", "/api/v1/reports/"+lamp, map[string]string{"status": st, "note": "已更换灯泡", "assignee": "王师傅"}, nil); code != 200 {
			t.Fatalf("patch: %d", code)
		}
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var r kioskReport
		s.kiosk.do(t, "GET", "/api/v1/reports/"+lamp, nil, &r)
		return r.Status == "resolved", fmt.Sprintf("kiosk shows %+v", r)
	})
	s.report(t, "20240001", "noise", "夜间装修噪音")
	if code := s.kiosk.do(t, "POST", "/api/v1/checkins", map[string]string{"resident": "R-N2", "activity": "C1"}, nil); code != 201 {
		t.Fatalf("check-in: %d", code)
	}

	b := browser.New(t)
	shot := func(k *kioskPage, name string) {
		t.Helper()
		// Let transitions, fonts and polls settle before the picture.
		k.Wait(uiWait, "fonts", `document.fonts.status === 'loaded'`)
		path := filepath.Join(dir, name+".png")
		if err := os.WriteFile(path, k.Screenshot(0.5), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("saved %s", path)
	}
	portrait := openKiosk(t, b, s.kiosk.URL, 1080, 1920)
	landscape := openKiosk(t, b, s.kiosk.URL, 1920, 1080)
	for _, k := range []*kioskPage{portrait, landscape} {
		k.Wait(uiWait, "the full-screen alert", `!document.getElementById('alert').hidden`)
		k.Wait(uiWait, "online", `document.getElementById('sync').dataset.state === 'online'`)
	}
	shot(portrait, "alarm-alert-portrait")
	for _, k := range []*kioskPage{portrait, landscape} {
		k.click("#alert .alert-ok")
		k.Wait(uiWait, "the alarm banner", `!document.getElementById('alarm').hidden`)
	}
	shot(portrait, "start-portrait")
	shot(landscape, "start-landscape")

	portrait.click("#go-identify")
	portrait.waitScreen("identify")
	for _, d := range "2024" {
		portrait.click(`.key[data-key="` + string(d) + `"]`)
	}
	shot(portrait, "identify-portrait")

	for _, k := range []*kioskPage{portrait, landscape} {
		k.card("20240001")
		k.waitScreen("home")
		k.Do(chromedp.Evaluate[chromedp.Void](`document.getElementById('toast').hidden = true`))
	}
	shot(landscape, "home-landscape")
	landscape.click(`[data-go="activities"]`)
	landscape.waitScreen("activities")
	landscape.click(`[data-id="A1"] button.primary`)
	landscape.Wait(uiWait, "A1 confirmed", `document.querySelector('[data-id="A1"]').dataset.result === 'confirmed'`)
	landscape.click(`[data-id="C1"] button.primary`)
	landscape.Wait(uiWait, "C1 waitlisted", `document.querySelector('[data-id="C1"]').dataset.result === 'waitlisted'`)
	landscape.Do(chromedp.Evaluate[chromedp.Void](`document.getElementById('toast').hidden = true`))
	shot(landscape, "activities-landscape")
	portrait.click(`[data-go="activities"]`)
	portrait.waitScreen("activities")
	portrait.Wait(uiWait, "the list", `document.querySelectorAll('#activity-list .card').length === 4`)
	shot(portrait, "activities-portrait")

	portrait.home()
	portrait.click(`[data-go="report"]`)
	portrait.waitScreen("report")
	shot(portrait, "report-category-portrait")
	portrait.click(`[data-category="elevator"]`)
	portrait.Wait(uiWait, "a duplicate suggestion", `!!document.querySelector('[data-vote]')`)
	portrait.typeField("#rep-unit", "2-301")
	portrait.typeField("#rep-title", "电梯按钮失灵")
	shot(portrait, "report-form-portrait")
	landscape.home()
	landscape.click(`[data-go="mine"]`)
	landscape.Wait(uiWait, "my reports", `document.querySelectorAll('#mine-list .card').length === 2`)
	shot(landscape, "my-reports-landscape")

	portrait.home()
	portrait.click(`[data-go="rate"]`)
	portrait.waitScreen("rate")
	portrait.click(`[data-id="` + lamp + `"] button.primary`)
	portrait.click(`label[for="score-5"]`)
	portrait.typeField("#rate-comment", "修得很及时，谢谢王师傅！")
	shot(portrait, "rating-portrait")

	portrait.home()
	portrait.click(`[data-go="notices"]`)
	portrait.waitScreen("notices")
	shot(portrait, "notices-portrait")

	// The hub goes away: calm, not alarming.
	s.hub.Kill()
	landscape.home()
	landscape.Wait(uiWait, "offline", `document.getElementById('sync').dataset.state === 'offline'`)
	landscape.click(`[data-go="activities"]`)
	landscape.click(`[data-id="V1"] button.primary`)
	landscape.Wait(uiWait, "V1 confirmed", `document.querySelector('[data-id="V1"]').dataset.result === 'confirmed'`)
	landscape.Wait(uiWait, "pending", `document.getElementById('sync').dataset.pending !== '0'`)
	landscape.Do(chromedp.Evaluate[chromedp.Void](`document.getElementById('toast').hidden = true`))
	shot(landscape, "activities-offline-landscape")

	landscape.click(".nav-exit")
	landscape.waitScreen("start")
	landscape.click("#lang")
	landscape.Wait(uiWait, "English", `document.documentElement.lang === 'en'`)
	shot(landscape, "start-landscape-en")
}

// After the idle timeout the kiosk forgets the resident: the start screen
// in the default language, nothing of theirs on it or behind it, their
// draft gone. A tap on "keep going" during the countdown keeps them.
func TestKioskIdleForgetsResident(t *testing.T) {
	t.Parallel()
	e := startEdge(t, "kiosk-idle", "s1", "kiosk", "tcp://"+testkit.FreePort(t), "--building", "B1", "--idle-timeout", "8s")
	const resident = "77001234"
	if code := e.do(t, "POST", "/api/v1/reports", map[string]string{"category": "facilities", "title": "阳台漏水",
		"building": "B1", "resident": resident}, nil); code != 201 {
		t.Fatalf("file report: %d", code)
	}
	k := openKiosk(t, browser.New(t), e.URL, 1080, 1920)
	k.card(resident)
	k.waitScreen("home")
	k.click(`[data-go="mine"]`)
	k.waitText("#mine-list", "阳台漏水")
	k.home()
	k.click(`[data-go="report"]`)
	k.click(`[data-category="other"]`)
	k.typeField("#rep-title", "草稿内容")
	k.click("#lang")
	k.Wait(uiWait, "English", `document.documentElement.lang === 'en'`)

	// The countdown, and a tap that keeps the session.
	k.Wait(uiWait, "the idle countdown", `!document.getElementById('idle').hidden`)
	k.waitText("#idle-title", k.en["idle.title"])
	k.click("#idle-stay")
	k.Wait(uiWait, "the countdown gone", `document.getElementById('idle').hidden`)
	if v := browser.Eval[string](k.Page, `document.getElementById('rep-title').value`); v != "草稿内容" {
		t.Fatalf("after 'keep going' the draft reads %q", v)
	}

	// Then nobody touches it.
	k.waitScreen("start")
	k.Wait(uiWait, "the default language", `document.documentElement.lang === 'zh-CN'`)
	text := browser.Eval[string](k.Page, `document.body.innerText + ' ' + [...document.querySelectorAll('input, textarea')].map(e => e.value).join(' ')`)
	for _, secret := range []string{resident, "7•••••34", "阳台漏水", "草稿内容"} {
		if strings.Contains(text, secret) {
			t.Errorf("after the idle timeout the screen still holds %q:\n%s", secret, text)
		}
	}
	stored := browser.Eval[string](k.Page, `localStorage.length + '/' + sessionStorage.length + '/' + document.cookie`)
	if stored != "0/0/" {
		t.Errorf("the page kept something in the browser: %s", stored)
	}
	// Nothing of theirs behind the start screen either: a new report starts
	// from the categories, anonymous.
	k.click(`[data-go="report"]`)
	k.waitScreen("report")
	if browser.Eval[bool](k.Page, `!!document.getElementById('rep-title') || !document.querySelector('[data-category]')`) {
		t.Fatal("the next person sees the previous person's report draft")
	}
}

// zh-CN by default; the toggle switches every string to English and back,
// across screens and identification.
func TestKioskLanguageToggle(t *testing.T) {
	t.Parallel()
	e := startEdge(t, "kiosk-lang", "s1", "kiosk", "tcp://"+testkit.FreePort(t), "--building", "B2")
	k := openKiosk(t, browser.New(t), e.URL, 1920, 1080)
	zh, en := k.zh, k.en
	if lang := browser.Eval[string](k.Page, `document.documentElement.lang`); lang != "zh-CN" {
		t.Fatalf("default language %q", lang)
	}
	k.waitText("#screen-title", zh["start.title"])
	k.waitText("#lang", zh["lang.other"])
	k.waitText("#where", fill(zh["app.where"], "building", "B2"))

	k.click("#lang")
	k.Wait(uiWait, "English", `document.documentElement.lang === 'en'`)
	k.waitText("#screen-title", en["start.title"])
	k.waitText("#lang", en["lang.other"])
	k.waitText("#where", fill(en["app.where"], "building", "B2"))
	if title := browser.Eval[string](k.Page, `document.title`); title != en["app.title"] {
		t.Errorf("document title %q, want %q", title, en["app.title"])
	}
	// Nothing Chinese is left on the English screen but the way back
	// (the toggle) and the logo mark.
	han := browser.Eval[string](k.Page, `(() => {
		const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
		let out = '';
		while (w.nextNode()) {
			const n = w.currentNode;
			if (n.parentElement.closest('#lang, .logo, [hidden]')) continue;
			if (/\p{Script=Han}/u.test(n.textContent)) out += n.textContent + '|';
		}
		return out;
	})()`)
	if han != "" {
		t.Errorf("untranslated text on the English start screen: %q", han)
	}
	k.card("55")
	k.waitScreen("home")
	k.waitText("#screen-title", fill(en["home.title"], "who", "55"))
	k.click(`[data-go="activities"]`)
	k.waitText("#screen-title", en["act.title"])
	k.click("#lang")
	k.Wait(uiWait, "Chinese", `document.documentElement.lang === 'zh-CN'`)
	k.waitText("#screen-title", zh["act.title"])
}

// A smoke reading posted to the gateway of building B3 reaches a kiosk in
// building B1 of the same site — pushed, on screen within 2 s of the hub
// having it — as a full-screen alert in the resident's language: the
// building and the place from the gateway's config, the time in the site's
// zone (set to Asia/Tokyo here; the browser and the hub run in UTC), and
// what to do. Dismissed, it stays a banner until the detector clears. A
// kiosk of a site that shows residents only water alarms does not show it.
func TestKioskAlarmAlert(t *testing.T) {
	t.Parallel()
	mqttAddr := testkit.FreePort(t)
	broker := "tcp://" + mqttAddr
	h := startHub(t, filepath.Join(t.TempDir(), "hub"), mqttAddr, "")
	k := startEnrolledEdge(t, h, "kiosk-b1", "s1", "kiosk", "--building", "B1", "--time-zone", "Asia/Tokyo")
	wet := startEnrolledEdge(t, h, "kiosk-b2", "s1", "kiosk", "--building", "B2", "--resident-alarms", "water")
	conf := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(conf, []byte("building: B3\nplaces:\n  B3-smoke-9: 3号楼 1单元 楼道烟感\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startEdge(t, "gw-b3", "s1", "gateway", broker, "--config", conf)
	for _, e := range []*edgeProc{k, wet, gw} {
		poll.Eventually(t, 20*time.Second, func() (bool, string) { return e.sync(t).Connected, e.ID + " not connected" })
	}

	b := browser.New(t)
	page := openKiosk(t, b, k.URL, 1080, 1920)
	// The page notes when the alert appears, by its own clock (the same
	// machine's as the test's).
	page.Do(chromedp.Evaluate[chromedp.Void](`new MutationObserver(() => {
		if (!document.getElementById('alert').hidden && !window.alertAt) window.alertAt = Date.now();
	}).observe(document.getElementById('alert'), { attributes: true })`))

	if code := gw.do(t, "POST", "/api/v1/readings", map[string]any{"sensor": "B3-smoke-9", "kind": "smoke", "value": 1}, nil); code != 201 {
		t.Fatalf("smoke reading: %d", code)
	}
	var atHub time.Time
	var alarm hubAlarm
	var since time.Time
	for deadline := time.Now().Add(20 * time.Second); ; {
		var as []struct {
			hubAlarm
			Since time.Time `json:"since"`
		}
		h.do(t, "GET", "/api/v1/alarms", nil, &as)
		if len(as) == 1 {
			atHub, alarm, since = time.Now(), as[0].hubAlarm, as[0].Since
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alarm at the hub: %+v", as)
		}
		time.Sleep(10 * time.Millisecond)
	}
	page.Wait(uiWait, "the full-screen alert", `!!window.alertAt`)
	shown := time.UnixMilli(browser.Eval[int64](page.Page, `window.alertAt`))
	t.Logf("alert on the kiosk %v after the hub had the alarm", shown.Sub(atHub).Round(time.Millisecond))
	if shown.Sub(atHub) > 2*time.Second {
		t.Errorf("alert on the kiosk %v after the hub had it, want within 2s", shown.Sub(atHub))
	}

	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"#alert-title": page.zh["alert.title.fire"],
		".alert-kind":  page.zh["alert.kind.smoke"],
		".alert-where": fill(page.zh["alert.building"], "b", "B3") + " · 3号楼 1单元 楼道烟感",
		".alert-time":  fill(page.zh["alert.since"], "time", since.In(tokyo).Format("15:04")),
		".alert-steps": page.zh["alert.do.fire.1"],
		".alert-ok":    page.zh["alert.ok"],
	}
	for css, w := range want {
		if got := page.text("#alert " + css); !strings.Contains(got, w) {
			t.Errorf("alert %s: %q, want %q", css, got, w)
		}
	}
	if alarm.Building != "B3" || alarm.Place != "3号楼 1单元 楼道烟感" {
		t.Errorf("hub alarm %+v", alarm)
	}
	// In English too: the words come from the page's catalogues.
	page.click("#alert .alert-lang")
	page.waitText("#alert #alert-title", page.en["alert.title.fire"])
	page.click("#alert .alert-ok")
	page.Wait(uiWait, "the banner instead of the alert", `document.getElementById('alert').hidden && !document.getElementById('alarm').hidden`)
	page.waitText("#alarm", page.en["alert.kind.smoke"])

	// The water-only kiosk has the site's alarms (a leak shows) but not the smoke.
	if code := gw.do(t, "POST", "/api/v1/readings", map[string]any{"sensor": "B3-water-2", "kind": "water", "value": 1}, nil); code != 201 {
		t.Fatalf("water reading: %d", code)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var as []struct{ Kind string }
		wet.do(t, "GET", "/api/v1/alarms", nil, &as)
		return len(as) == 1 && as[0].Kind == "water", fmt.Sprintf("water-only kiosk shows %+v, want the leak alone", as)
	})

	// The detector clears: the smoke banner goes; the leak stays.
	if code := gw.do(t, "POST", "/api/v1/readings", map[string]any{"sensor": "B3-smoke-9", "kind": "smoke", "value": 0}, nil); code != 201 {
		t.Fatalf("smoke reading 0: %d", code)
	}
	page.Wait(uiWait, "the smoke alarm gone, the leak shown", `document.getElementById('alarm').dataset.kind === 'water'`)
}
