package api

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"linli/shared/accesslist"
	"linli/shared/event"
	"linli/shared/httpx"
	"linli/shared/merge"
)

// maxAccessBody bounds a PUT of a building's list: about 50,000 credentials
// in their text form, the most one list may hold.
const maxAccessBody = 1 << 20

func (a *API) mountAccess(mux *http.ServeMux) {
	// Changing a list opens doors: admins only (requireAdmin).
	mux.HandleFunc("PUT /api/v1/access-lists/{site}/{building}", a.wrap(a.requireAdmin(a.putAccessList)))
	mux.HandleFunc("GET /api/v1/access-lists/{site}/{building}", a.wrap(a.requireAuth(a.getAccessList)))
	mux.HandleFunc("GET /api/v1/access-lists", a.wrap(a.requireAuth(a.listAccessLists)))
}

// accessListOut is a list as operators see it: per door the number of
// cards and their pseudonyms (the names access events give them), never
// the cards themselves, which the hub does not keep.
type accessListOut struct {
	ID       string          `json:"id"`
	Site     string          `json:"site"`
	Building string          `json:"building"`
	Issued   time.Time       `json:"issued"`
	Doors    []accessDoorOut `json:"doors"`
}

type accessDoorOut struct {
	Door  string   `json:"door"`
	Cards int      `json:"cards"`
	Names []string `json:"pseudonyms"`
}

func summarizeAccess(l accesslist.List) accessListOut {
	out := accessListOut{ID: accesslist.ID(l.Site, l.Building), Site: l.Site, Building: l.Building,
		Issued: l.Issued.Time(), Doors: []accessDoorOut{}}
	for _, d := range l.Doors {
		names := make([]string, len(d.Cards))
		for i, c := range d.Cards {
			names[i] = accesslist.Pseudonym(c)
		}
		slices.Sort(names)
		out.Doors = append(out.Doors, accessDoorOut{Door: d.Name, Cards: len(d.Cards), Names: names})
	}
	return out
}

// putAccessList replaces a building's access list:
//
//	PUT /api/v1/access-lists/{site}/{building}
//	{"doors":{"B3-main":["26:123:45678","34:4097:513"],"B3-back":["26:123:1001"]}}
//
// Credentials are Wiegand cards in their canonical form; the hub hashes
// them with the site's key at once and keeps only the hashes. A door left
// out (or given no cards) opens for nobody.
func (a *API) putAccessList(w http.ResponseWriter, r *http.Request) error {
	site, building, err := siteBuilding(r)
	if err != nil {
		return err
	}
	var req struct {
		Doors map[string][]string `json:"doors"`
	}
	if err := httpx.DecodeLimit(w, r, &req, maxAccessBody); err != nil {
		return err
	}
	if req.Doors == nil {
		return httpx.BadRequest("doors", "doors is required: an object of door → [credential …] ({} locks every door)")
	}
	var key []byte
	a.State.Read(func(m *merge.State) { key = m.AccessKey(site) })
	if key == nil {
		// The site's first list: its key is born here and lives on in every
		// list of the site, so a card keeps its pseudonym across lists.
		key = make([]byte, accesslist.KeySize)
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("new access key: %w", err)
		}
	}
	p, _ := a.Caller(r) // requireAdmin has checked it
	set := &event.AccessListSet{Site: site, Building: building, Key: key, Who: p.Name}
	for _, door := range slices.Sorted(maps.Keys(req.Doors)) {
		if err := event.ValidID(door); err != nil {
			return httpx.BadRequest("doors", "door %v", err)
		}
		d := event.AccessDoor{Door: door}
		for i, c := range req.Doors[door] {
			canon, err := accesslist.Canonical(c)
			if err != nil {
				return httpx.BadRequest("doors", "doors.%s[%d]: %v (want a Wiegand card such as 26:123:45678)", door, i, err)
			}
			d.Cards = append(d.Cards, accesslist.Hash(key, canon))
		}
		slices.SortFunc(d.Cards, bytes.Compare)
		d.Cards = slices.CompactFunc(d.Cards, bytes.Equal) // the same card twice is one card
		set.Doors = append(set.Doors, d)
	}
	if err := set.Validate(); err != nil {
		return httpx.FromValidation(err)
	}
	if _, err := a.State.Record(set); err != nil {
		return a.recordError(err)
	}
	return a.writeAccessList(w, accesslist.ID(site, building))
}

func (a *API) writeAccessList(w http.ResponseWriter, id string) error {
	var (
		l   accesslist.List
		err error
	)
	a.State.Read(func(m *merge.State) { l, err = m.AccessList(id) })
	if errors.Is(err, merge.ErrNotFound) {
		return &httpx.Error{Status: http.StatusNotFound, Msg: "no access list " + id}
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, summarizeAccess(l))
	return nil
}

func (a *API) getAccessList(w http.ResponseWriter, r *http.Request) error {
	site, building, err := siteBuilding(r)
	if err != nil {
		return err
	}
	if err := a.CheckSite(r, site); err != nil {
		return err
	}
	return a.writeAccessList(w, accesslist.ID(site, building))
}

func (a *API) listAccessLists(w http.ResponseWriter, r *http.Request) error {
	sites, err := a.Scope(r, r.URL.Query().Get("site"))
	if err != nil {
		return err
	}
	out := []accessListOut{}
	a.State.Read(func(m *merge.State) {
		for _, site := range sites { // "" is every site
			for _, l := range m.AccessLists(site) {
				out = append(out, summarizeAccess(l))
			}
		}
	})
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// siteBuilding reads and checks the {site} and {building} of a path.
func siteBuilding(r *http.Request) (site, building string, err error) {
	site, building = r.PathValue("site"), r.PathValue("building")
	if err := event.ValidID(site); err != nil {
		return "", "", httpx.BadRequest("site", "site %v", err)
	}
	if err := event.ValidID(building); err != nil {
		return "", "", httpx.BadRequest("building", "building %v", err)
	}
	return site, building, nil
}
