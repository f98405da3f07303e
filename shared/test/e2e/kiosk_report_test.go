package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"linli/shared/test/browser"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// sitePlan writes the demo community's plan as site s1's, for a kiosk to
// read with --site-plan.
func sitePlan(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testkit.Root(), "configs", "site-xiangyang.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	plan := regexp.MustCompile(`(?m)^site: xiangyang$`).ReplaceAllString(string(data), "site: s1")
	path := filepath.Join(t.TempDir(), "site-s1.yaml")
	if err := os.WriteFile(path, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A resident files a report at the real kiosk binary by taps alone — a
// category, one of its common problems from the site plan, a building of
// the site, the unit on the keypad and details in pinyin on the on-screen
// keyboard — and the page sees no keyboard event. The report is on the
// kiosk and then at the hub with its title, building and unit; the done
// screen says it reached the community once it did. The kiosk's API
// refuses a building the site does not have.
func TestKioskReportByTouchAlone(t *testing.T) {
	t.Parallel()
	s := startKioskSite(t, "kiosk-touch", "--site-plan", sitePlan(t), "--idle-timeout", "10m")
	k := openKiosk(t, browser.New(t), s.kiosk.URL, 1080, 1920)
	browser.Eval[bool](k.Page, `(() => { window.keyEvents = 0;
		for (const e of ['keydown', 'keypress', 'keyup']) document.addEventListener(e, () => window.keyEvents++, true);
		return true; })()`)

	k.click(`[data-go="report"]`)
	k.waitScreen("report")
	k.click(`[data-category="elevator"]`)
	k.Wait(uiWait, "the common problems", `!!document.querySelector('[data-choice]')`)
	k.CheckAccessible("report: common problems")
	k.waitText(`[data-choice="0"]`, "电梯异响")
	k.click(`[data-choice="0"]`)
	k.Wait(uiWait, "the report form", `!!document.getElementById('rep-submit')`)
	k.CheckAccessible("report: form")
	k.click(`[data-building="B2"]`)
	for _, key := range []string{"2", "-", "3", "0", "1"} {
		k.click(`[data-ukey="` + key + `"]`)
	}
	k.click("#rep-desc")
	k.Wait(uiWait, "the on-screen keyboard", `!document.getElementById('osk').hidden`)
	k.CheckAccessible("report: on-screen keyboard")
	for _, w := range []struct{ pinyin, ch string }{{"ye", "夜"}, {"jian", "间"}} {
		for _, key := range w.pinyin {
			k.click(`#osk [data-osk-key="` + string(key) + `"]`)
		}
		k.Wait(uiWait, "candidate "+w.ch, `[...document.querySelectorAll('#osk .cand')].some((b) => b.textContent === `+js(w.ch)+`)`)
		i := browser.Eval[int](k.Page, `[...document.querySelectorAll('#osk .cand')].findIndex((b) => b.textContent === `+js(w.ch)+`)`)
		k.click(fmt.Sprintf(`#osk [data-cand="%d"]`, i))
	}
	k.click("#osk-done")
	k.click("#rep-submit")
	k.waitText("#screen-title", k.zh["rep.done_title"])
	k.CheckAccessible("report: done")
	// The screen shows the short number; the report's id rides along in
	// the number's data-id.
	id := browser.Eval[string](k.Page, `(document.querySelector('#rep-number') || {dataset: {}}).dataset.id || ''`)
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+\.\d+$`).MatchString(id) {
		t.Fatalf("done screen shows no report number: %q", k.text(".done"))
	}
	if n := browser.Eval[int](k.Page, `window.keyEvents`); n != 0 {
		t.Fatalf("the page saw %d keyboard events; filing a report must need none", n)
	}

	type placed struct {
		Title    string `json:"title"`
		Building string `json:"building"`
		Unit     string `json:"unit"`
		Synced   bool   `json:"synced"`
	}
	want := placed{Title: "电梯异响", Building: "B2", Unit: "2-301"}
	var onKiosk placed
	if code := s.kiosk.do(t, "GET", "/api/v1/reports/"+id, nil, &onKiosk); code != 200 ||
		onKiosk.Title != want.Title || onKiosk.Building != want.Building || onKiosk.Unit != want.Unit {
		t.Fatalf("kiosk report %s: %d %+v, want %+v", id, code, onKiosk, want)
	}
	poll.Eventually(t, 20*time.Second, func() (bool, string) {
		var atHub placed
		code := s.hub.do(t, "GET", "/api/v1/reports/"+id, nil, &atHub)
		atHub.Synced = false
		return code == 200 && atHub == want, fmt.Sprintf("hub report %s: %d %+v", id, code, atHub)
	})
	// Saved here, then sent: the headline follows.
	k.waitText("#rep-headline", k.zh["rep.done_synced"])

	var refused map[string]any
	code := s.kiosk.do(t, "POST", "/api/v1/reports", map[string]string{"category": "noise", "title": "噪音", "building": "Z99"}, &refused)
	if code != 400 || !strings.Contains(fmt.Sprint(refused), "building") {
		t.Fatalf("report naming building Z99: %d %v, want 400 naming building", code, refused)
	}
}
