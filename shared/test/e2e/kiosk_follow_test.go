package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"linli/shared/test/browser"
	"linli/shared/test/poll"
	"linli/shared/test/testkit"
)

// followReport is what the kiosk and the hub answer about a report, as far
// as following it up goes.
type followReport struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Number     string `json:"number"`
	MergedInto string `json:"merged_into"`
	Synced     bool   `json:"synced"`
}

// A resident follows their reports up in elderly mode, in portrait and in
// landscape, against the real hub and kiosk: the home screen's badge says
// something changed; "my reports" shows each report's short number, its
// timeline with the office's reply, a report merged into a neighbour's
// (by that report's number); "still not fixed" reopens a resolved report
// at the hub; the one-touch call shows the office's number. The QR code
// on the kiosk opens a public page at the hub that names no resident.
// axe-core finds nothing critical or serious on any of these screens.
func TestKioskFollowReportsElderMode(t *testing.T) {
	t.Parallel()
	const phone = "0571-8888 1234"
	mqttAddr := testkit.FreePort(t)
	h := startHub(t, t.TempDir()+"/hub", mqttAddr, "")
	kiosk := startEnrolledEdge(t, h, "kiosk-fu", "s1", "kiosk", "--building", "B1", "--idle-timeout", "10m",
		"--public-url", h.URL, "--office-phone", phone)
	poll.Eventually(t, 20*time.Second, func() (bool, string) { return kiosk.sync(t).Connected, "kiosk-fu not connected" })
	s := &kioskSite{hub: h, kiosk: kiosk}
	b := browser.New(t)

	for i, size := range []struct {
		name          string
		width, height int64
	}{{"portrait", 1080, 1920}, {"landscape", 1920, 1080}} {
		resident := fmt.Sprintf("2024100%d", i)
		// One report resolved with a reply, one merged into a neighbour's.
		fixed := s.report(t, resident, "elevator", "电梯异响")
		dup := s.report(t, resident, "noise", "夜间装修噪音")
		canon := s.report(t, "R-N"+resident, "noise", "楼上装修太吵")
		if code := h.do(t, "PATCH", "/api/v1/reports/"+fixed, map[string]string{"status": "resolved", "note": "已更换曳引机"}, nil); code != 200 {
			t.Fatalf("resolve: %d", code)
		}
		if code := h.do(t, "POST", "/api/v1/reports/"+dup+"/merge", map[string]string{"into": canon}, nil); code >= 300 {
			t.Fatalf("merge: %d", code)
		}
		var canonical followReport
		poll.Eventually(t, 20*time.Second, func() (bool, string) {
			var f, d followReport
			kiosk.do(t, "GET", "/api/v1/reports/"+fixed, nil, &f)
			kiosk.do(t, "GET", "/api/v1/reports/"+dup, nil, &d)
			kiosk.do(t, "GET", "/api/v1/reports/"+canon, nil, &canonical)
			return f.Status == "resolved" && d.MergedInto == canon, fmt.Sprintf("kiosk: %+v %+v", f, d)
		})

		t.Run(size.name, func(t *testing.T) {
			k := openKiosk(t, b, kiosk.URL, size.width, size.height)
			zh := k.zh
			normal := browser.Eval[float64](k.Page, `parseFloat(getComputedStyle(document.querySelector('.tile')).fontSize)`)
			// Elderly mode from the start screen: larger type, fewer choices.
			k.click("#elder-toggle")
			k.Wait(uiWait, "elderly mode", `document.body.classList.contains('elder') && document.getElementById('elder-toggle').getAttribute('aria-pressed') === 'true'`)
			if big := browser.Eval[float64](k.Page, `parseFloat(getComputedStyle(document.querySelector('.tile')).fontSize)`); big < normal*1.2 {
				t.Fatalf("tile type %.1fpx in elderly mode, %.1fpx without: want at least 20%% larger", big, normal)
			}
			if n := browser.Eval[int](k.Page, `document.querySelectorAll('.preview').length`); n != 0 {
				t.Fatal("elderly mode still shows the notice preview on the start screen")
			}
			k.CheckAccessible(size.name + ": start screen, elderly mode")

			// One-touch call from the start screen.
			k.click("#call-office")
			k.waitScreen("call")
			k.waitText("#office-phone", phone)
			k.CheckAccessible(size.name + ": call the property office")
			k.click(".actions button.primary")
			k.waitScreen("start")

			k.card(resident)
			k.waitScreen("home")
			if !browser.Eval[bool](k.Page, `document.body.classList.contains('elder')`) {
				t.Fatal("elderly mode was forgotten on the way to the home screen")
			}
			if n := browser.Eval[int](k.Page, `document.querySelectorAll('[data-go="rate"], [data-go="notices"]').length`); n != 0 {
				t.Fatalf("elderly home screen shows %d of rate and notices, want neither", n)
			}
			k.waitText("#mine-badge", fill(zh["home.mine_changed"], "n", 2))
			k.CheckAccessible(size.name + ": home, elderly mode, with the badge")

			k.click(`[data-go="mine"]`)
			k.waitScreen("mine")
			k.waitText(`[data-id="`+dup+`"] .merged`, fill(zh["mine.merged"], "n", canonical.Number))
			card := `[data-id="` + fixed + `"]`
			k.waitText(card+" .number", "B1-")
			k.waitText(card+" .timeline", "已更换曳引机")
			k.waitText(card+" .timeline", zh["step.created"])
			k.CheckAccessible(size.name + ": my reports, elderly mode")
			k.click(`[data-reopen="` + fixed + `"]`)
			k.waitText(`[data-reopened="`+fixed+`"]`, zh["mine.reopened"])
			poll.Eventually(t, 20*time.Second, func() (bool, string) {
				var r followReport
				h.do(t, "GET", "/api/v1/reports/"+fixed, nil, &r)
				return r.Status == "accepted", fmt.Sprintf("hub: %+v", r)
			})
			// The kiosk shows it back once the hub's change comes down.
			k.Wait(uiWait, "reopened on the card", `(() => { const c = document.querySelector(`+js(card)+`); return !!c && c.dataset.status === 'accepted' && !!c.querySelector('.timeline [data-event="reopened"]'); })()`)
			k.CheckAccessible(size.name + ": my reports after the reopen")

			// Looked at: the badge is gone.
			k.home()
			k.Wait(uiWait, "the badge's count", `!!document.querySelector('[data-go="mine"][data-changed]')`)
			if n := browser.Eval[string](k.Page, `document.querySelector('[data-go="mine"]').dataset.changed`); n != "0" {
				t.Fatalf("%s reports still count as changed after the resident looked at them (their own reopen included)", n)
			}

			// Filing in elderly mode: the done screen shows the short
			// number and the QR code the kiosk drew.
			filed := fileReport(k, "sanitation", "垃圾桶满了", "", false)
			k.waitText("#rep-number", "B1-")
			k.Wait(uiWait, "the QR code drawn", `(() => { const i = document.querySelector('.qr img'); return !!i && i.complete && i.naturalWidth > 0; })()`)
			if src := browser.Eval[string](k.Page, `document.querySelector('.qr img').getAttribute('src')`); !strings.Contains(src, filed) {
				t.Fatalf("QR code of %q, want of %s", src, filed)
			}
			k.CheckAccessible(size.name + ": report filed, with its number and QR code")
			k.click(".done .actions button:last-child")

			// Signing out ends elderly mode.
			k.click(".nav-exit")
			k.waitScreen("start")
			if browser.Eval[bool](k.Page, `document.body.classList.contains('elder')`) {
				t.Fatal("elderly mode outlived the session")
			}
		})
	}

	// The QR code the kiosk draws, and the page it opens: no resident.
	var rep followReport
	kiosk.do(t, "GET", "/api/v1/reports/kiosk-fu.1", nil, &rep)
	resp, err := http.Get(kiosk.URL + "/api/v1/reports/kiosk-fu.1/qr.svg")
	if err != nil {
		t.Fatal(err)
	}
	svg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(svg), "<svg") {
		t.Fatalf("QR: %d %.60s", resp.StatusCode, svg)
	}
	resp, err = http.Get(h.URL + "/r/s1/" + rep.Number)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), rep.Number) || !strings.Contains(string(page), "已更换曳引机") ||
		strings.Contains(string(page), "20241000") || strings.Contains(string(page), "2-101") {
		t.Fatalf("public page of %s: %d\n%s", rep.Number, resp.StatusCode, page)
	}
}
