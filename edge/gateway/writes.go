package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"linli/edge/api"
	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/httpx"
)

// Readings applies a gateway's rules to a posted reading.
type Readings interface {
	// Reading records a reading after raising or clearing the alarm it
	// implies, as for a wired sensor; errors as api.Log.Append.
	Reading(ctx context.Context, r *event.Reading) (event.Event, error)
}

var _ Readings = (*Gateway)(nil)

// Writes are the writes only a gateway takes over HTTP: door decisions
// (POST /api/v1/access) and sensor readings (POST /api/v1/readings), on
// the edge API's write path.
type Writes struct {
	API *api.API

	// CardKey returns the site's card key from the access list in force
	// (nil before the first list). A card named in a posted access event
	// is stored only as its keyed pseudonym, as the gateway's reader
	// records it; without a key the event is kept without its card,
	// never with it in clear.
	CardKey func() []byte
	// Rules are what readings go through (nil records them as plain
	// telemetry); Building is the building access events happen in.
	Rules    Readings
	Building string
}

// Mount adds the gateway's writes to w.API; an edge of another role
// answers them 404. Call it before w.API.Handler.
func (g *Writes) Mount() {
	g.API.Routes = append(g.API.Routes,
		api.Route{Pattern: "POST /api/v1/access", Role: api.RoleGateway, Handle: g.postAccess},
		api.Route{Pattern: "POST /api/v1/readings", Role: api.RoleGateway, Handle: g.postReading})
}

func (g *Writes) postAccess(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Door       string `json:"door"`
		Credential string `json:"credential"`
		Result     string `json:"result"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	card, err := g.card(req.Credential)
	if err != nil {
		return err
	}
	ev, err := g.API.Append(r.Context(), &event.Access{Door: req.Door, Credential: card, Result: req.Result, Building: g.Building})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, api.Created{ID: ev.ID(), Seq: ev.Seq, Credential: card})
	return nil
}

// card is how an access event names the credential it was posted with:
// only ever by the card's keyed pseudonym (see accesslist.PseudonymFor).
func (g *Writes) card(credential string) (string, error) {
	if credential == "" {
		return "", nil
	}
	var key []byte
	if g.CardKey != nil {
		key = g.CardKey()
	}
	p, err := accesslist.PseudonymFor(key, credential)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, accesslist.ErrNoKey):
		// No list yet, so no key: the event is kept without its card, as
		// the reader keeps a swipe before the first list. The door's
		// decision is still a record the contract answers 201 for, and a
		// card is never stored in clear.
		return "", nil
	}
	return "", httpx.BadRequest("credential", "credential: must be a card number, a Wiegand card such as 26:123:45678, or a card pseudonym h:…: %v", err)
}

func (g *Writes) postReading(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Sensor string          `json:"sensor"`
		Kind   string          `json:"kind"`
		Value  json.RawMessage `json:"value"`
	}
	if err := httpx.Decode(w, r, &req); err != nil {
		return err
	}
	v, err := readingValue(req.Value)
	if err != nil {
		return err
	}
	rd := &event.Reading{Sensor: req.Sensor, Type: req.Kind, Value: v}
	if g.Rules == nil {
		return g.API.Write(w, r, rd)
	}
	if err := rd.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	ev, err := g.Rules.Reading(r.Context(), rd)
	if err != nil {
		return g.API.StoreError(err)
	}
	httpx.WriteJSON(w, http.StatusCreated, api.Created{ID: ev.ID(), Seq: ev.Seq})
	return nil
}

// readingValue accepts a number, or for smoke and water a boolean.
func readingValue(raw json.RawMessage) (float64, error) {
	switch s := strings.TrimSpace(string(raw)); s {
	case "", "null":
		return 0, httpx.BadRequest("value", "value is required")
	case "true":
		return 1, nil
	case "false":
		return 0, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, httpx.BadRequest("value", "value must be a number (or true/false for smoke and water)")
	}
	return v, nil
}
