package bench

import (
	"encoding/json"
	"fmt"
	"strconv"

	"linli/shared/accesslist"
	"linli/shared/event"
)

const benchSite = "bench"

// cardKey is the gateway's key for card pseudonyms in the mix.
var cardKey = []byte("linli-bench-card-key-0123456789ab")

// mixBody is the i-th event of the catch-up mix: what a building's gateway
// and its lobby kiosk record over a long outage. Out of every 20: 8 door
// decisions, 5 sensor readings, 4 check-ins and check-outs, a report, a
// "me too" on that report and a rating. device is the recording edge.
func mixBody(device string, i int) event.Body {
	r := "R" + strconv.Itoa(1000+i*7919%5000) // 5,000 residents
	switch k := i % 20; {
	case k < 8:
		res, reason := "granted", ""
		if i%53 == 0 {
			res, reason = "denied", "not_listed"
		}
		card := accesslist.Pseudonym(accesslist.Hash(cardKey, "C"+strconv.Itoa(i*31%4000)))
		return &event.Access{Door: "B" + strconv.Itoa(1+i%6) + "-main", Credential: card, Result: res, Building: "B1", Reason: reason}
	case k < 13:
		if k%2 == 0 {
			return &event.Reading{Sensor: "B1-t-" + strconv.Itoa(i%8), Type: "temperature", Value: 18 + float64(i%90)/10, Building: "B1"}
		}
		return &event.Reading{Sensor: "B1-h-" + strconv.Itoa(i%8), Type: "humidity", Value: 35 + float64(i%300)/10, Building: "B1"}
	case k < 17:
		action := "in"
		if k == 16 {
			action = "out"
		}
		return &event.Checkin{Resident: r, Activity: activity(i), Action: action, Status: event.StatusRecorded}
	case k == 17:
		return &event.Report{Category: event.Categories[i%len(event.Categories)], Title: "楼道灯不亮 " + strconv.Itoa(i%100),
			Description: "3 单元 " + strconv.Itoa(1+i%18) + " 楼的灯坏了", Building: "B" + strconv.Itoa(1+i%6), Unit: fmt.Sprintf("%d-%d02", 1+i%3, 1+i%18), Resident: r}
	case k == 18:
		return &event.Vote{Report: event.FormatID(device, uint64(i)), Resident: r} // the report just before
	default:
		return &event.Rating{Resident: r, Target: activity(i), Score: 1 + i%5}
	}
}

// jsonEvent is an event as the hub's API renders it, and as a naive
// JSON-per-message client would send it.
type jsonEvent struct {
	Device string     `json:"device"`
	Seq    uint64     `json:"seq"`
	Kind   string     `json:"kind"`
	HLC    uint64     `json:"hlc"`
	Body   event.Body `json:"body"`
}

// eventJSON renders ev as JSON.
func eventJSON(ev *event.Event) ([]byte, error) {
	body, err := ev.Decode()
	if err != nil {
		return nil, err
	}
	return json.Marshal(jsonEvent{Device: ev.Device, Seq: ev.Seq, Kind: ev.Kind.String(), HLC: uint64(ev.HLC), Body: body})
}

// activity is the activity the i-th event of the mix concerns: three run
// at a time and a new one starts every 1,000 events, so each gathers a few
// hundred check-ins, as a morning tai chi class or a volunteer shift does.
func activity(i int) string { return "A" + strconv.Itoa(i/1000+i%3) }
