package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/shared/event"
	"linli/shared/hlc"
	"linli/shared/merge"
	"linli/shared/wire"
)

// PutEntities projects a site's downlink changes into the entity tables
// (reports, activities, activity_attendance, notices, alarms; the view
// report_steps unfolds the reports' own rows) inside tx, the transaction
// that commits the facts the changes come from: the tables then never
// show a state the facts do not hold, and a rolled-back commit leaves
// them as they were. It is
// ProjectEntities and its write in one.
func PutEntities(ctx context.Context, tx pgx.Tx, site string, changes []wire.Change) error {
	w, err := ProjectEntities(site, changes)
	if err != nil || w == nil {
		return err
	}
	return w(ctx, tx)
}

// ProjectEntities is the store's projector: it turns a site's downlink
// changes into the entity tables' rows now (decoding each view, encoding
// its JSON), while the ingest prepares the batch, and returns the write
// that sends them inside the commit's transaction.
//
// Each change is a whole snapshot of its entity (or its deletion), so a
// row is replaced, never patched; a later change of an entity in the same
// call wins. Changes for one device or one role (Device, Role or Withheld
// set: a site CA's trust, the gateways' access lists) are per-edge
// deliveries, not the community's state, and are skipped, as are entity
// kinds without a table (resident erasures: the erased views come as
// changes of their own).
//
// All rows go in a handful of statements sent as one pipeline, each
// table's rows in key order so that concurrent commits touching the same
// entities wait on each other rather than deadlock.
func ProjectEntities(site string, changes []wire.Change) (ProjectWrite, error) {
	type ekey struct{ entity, id string }
	last := map[ekey]wire.Change{}
	for _, c := range changes {
		if c.Device != "" || c.Role != "" || c.Withheld {
			continue
		}
		switch c.Entity {
		case wire.EntityReport, wire.EntityActivity, wire.EntityNotice, wire.EntityAlarm:
		default:
			continue
		}
		if c.IsDelta() {
			// The downlink log holds snapshots; a delta here is a caller
			// handing over a live message instead of the log's change.
			return nil, fmt.Errorf("project %s %s of site %s: a delta, not the entity", c.Entity, c.ID, site)
		}
		last[ekey{c.Entity, c.ID}] = c
	}
	if len(last) == 0 {
		return nil, nil
	}
	keys := slices.SortedFunc(maps.Keys(last), func(a, b ekey) int {
		return cmp.Or(cmp.Compare(a.entity, b.entity), cmp.Compare(a.id, b.id))
	})
	p := &entityRows{site: site}
	for _, k := range keys {
		c := last[k]
		if err := p.add(c); err != nil {
			return nil, fmt.Errorf("project %s %s of site %s: %w", c.Entity, c.ID, site, err)
		}
	}
	return func(ctx context.Context, tx pgx.Tx) error {
		if err := p.diffAttendance(ctx, tx); err != nil {
			return fmt.Errorf("project %d changes of site %s: %w", len(keys), site, err)
		}
		b := &pgx.Batch{}
		p.queue(b)
		res := tx.SendBatch(ctx, b)
		for i := range b.Len() {
			if _, err := res.Exec(); err != nil {
				res.Close()
				return fmt.Errorf("project %d changes of site %s: statement %d: %w", len(keys), site, i+1, err)
			}
		}
		if err := res.Close(); err != nil {
			return fmt.Errorf("project %d changes of site %s: %w", len(keys), site, err)
		}
		return nil
	}, nil
}

// entityRows gathers one call's rows as column arrays, table by table.
type entityRows struct {
	site string

	deleted map[string][]string // by table

	rep struct {
		ids, numbers, statuses, categories, titles, buildings, units, notes, mergedInto []string
		votes                                                                           []int64
		created, closed                                                                 []*time.Time
		updated                                                                         []time.Time
		views                                                                           [][]byte
	}
	act struct {
		ids, titles, kinds, venues                            []string
		starts, ends                                          []*time.Time
		capacity, seatsLeft, confirmed, waitlisted, attendedN []int64
		cancelled                                             []bool
		updated                                               []time.Time
		views                                                 [][]byte
	}
	// att is every activity's attendance as its view has it, by
	// activity and resident; diffAttendance turns it into the rows to
	// delete and to write.
	att    map[string]map[string]attendance
	attDel struct {
		activities, residents []string
	}
	attPut struct {
		activities, residents, statuses []string
		attended                        []bool
	}
	not struct {
		ids, titles, categories []string
		buildings               [][]string
		expires                 []*time.Time
		updated                 []time.Time
		views                   [][]byte
	}
	alm struct {
		ids, buildings, sources, kinds, severities, places, ackedBy []string
		active, open, acked                                         []bool
		first, last                                                 []time.Time
		cleared, closed                                             []*time.Time
		views                                                       [][]byte
	}
}

var entityTable = map[string]string{wire.EntityReport: "reports", wire.EntityActivity: "activities",
	wire.EntityNotice: "notices", wire.EntityAlarm: "alarms"}

func (p *entityRows) add(c wire.Change) error {
	if c.Deleted {
		if p.deleted == nil {
			p.deleted = map[string][]string{}
		}
		t := entityTable[c.Entity]
		p.deleted[t] = append(p.deleted[t], c.ID)
		return nil
	}
	switch c.Entity {
	case wire.EntityReport:
		var v merge.ReportView
		if err := decodeView(c.Body, &v); err != nil {
			return err
		}
		return p.addReport(&v)
	case wire.EntityActivity:
		var v merge.ActivityView
		if err := decodeView(c.Body, &v); err != nil {
			return err
		}
		return p.addActivity(&v)
	case wire.EntityNotice:
		var v merge.NoticeView
		if err := decodeView(c.Body, &v); err != nil {
			return err
		}
		return p.addNotice(&v)
	case wire.EntityAlarm:
		var v merge.AlarmView
		if err := decodeView(c.Body, &v); err != nil {
			return err
		}
		return p.addAlarm(&v)
	}
	return nil
}

// decodeView decodes a view the hub encoded (its own limits: an
// activity's lists outgrow those of messages from outside).
func decodeView(body []byte, v any) error {
	if len(body) == 0 {
		return fmt.Errorf("change without a body")
	}
	if err := event.UnmarshalOwn(body, v); err != nil {
		return fmt.Errorf("decode view: %w", err)
	}
	return nil
}

func (p *entityRows) addReport(v *merge.ReportView) error {
	view, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("view as JSON: %w", err)
	}
	var created, closed *time.Time
	for _, st := range v.Steps {
		if st.Event == merge.HistoryCreated && created == nil {
			created = hlcTime(st.HLC)
		}
		if st.Status == event.ReportResolved || st.Status == event.ReportRejected {
			closed = hlcTime(st.HLC)
		}
	}
	if v.Status != event.ReportResolved && v.Status != event.ReportRejected {
		closed = nil
	}
	r := &p.rep
	r.ids = append(r.ids, v.ID)
	r.numbers = append(r.numbers, v.Number)
	r.statuses = append(r.statuses, v.Status)
	r.categories = append(r.categories, v.Category)
	r.titles = append(r.titles, v.Title)
	r.buildings = append(r.buildings, v.Building)
	r.units = append(r.units, v.Unit)
	r.notes = append(r.notes, v.Note)
	r.mergedInto = append(r.mergedInto, v.MergedInto)
	r.votes = append(r.votes, int64(v.Votes))
	r.created = append(r.created, created)
	r.updated = append(r.updated, v.Updated.Time())
	r.closed = append(r.closed, closed)
	r.views = append(r.views, view)
	return nil
}

func (p *entityRows) addActivity(v *merge.ActivityView) error {
	view, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("view as JSON: %w", err)
	}
	a := &p.act
	a.ids = append(a.ids, v.ID)
	a.titles = append(a.titles, v.Title)
	a.kinds = append(a.kinds, v.Kind)
	a.venues = append(a.venues, v.Venue)
	a.starts = append(a.starts, msTime(v.Start))
	a.ends = append(a.ends, msTime(v.End))
	a.capacity = append(a.capacity, int64(v.Capacity))
	a.seatsLeft = append(a.seatsLeft, int64(v.SeatsLeft))
	a.confirmed = append(a.confirmed, int64(len(v.Confirmed)))
	a.waitlisted = append(a.waitlisted, int64(len(v.Waitlist)))
	a.attendedN = append(a.attendedN, int64(len(v.Attended)))
	a.cancelled = append(a.cancelled, v.Cancelled)
	a.updated = append(a.updated, v.Updated.Time())
	a.views = append(a.views, view)

	// One row per resident: confirmed first wins should a resident be on
	// both lists.
	rows := make(map[string]attendance, len(v.Confirmed)+len(v.Waitlist))
	for _, r := range v.Confirmed {
		if _, ok := rows[r]; !ok {
			rows[r] = attendance{status: "confirmed"}
		}
	}
	for _, r := range v.Waitlist {
		if _, ok := rows[r]; !ok {
			rows[r] = attendance{status: "waitlisted"}
		}
	}
	for _, r := range v.Attended {
		a, ok := rows[r]
		if !ok {
			a.status = "attended"
		}
		a.attended = true
		rows[r] = a
	}
	if p.att == nil {
		p.att = map[string]map[string]attendance{}
	}
	p.att[v.ID] = rows
	return nil
}

// attendance is one resident's row of an activity.
type attendance struct {
	status   string
	attended bool
}

// diffAttendance reads the attendance rows the call's activities
// have now and keeps, to write, only the residents who left, joined or
// changed: a check-in to an activity of thousands then writes one row,
// not thousands (an upsert of every row locks and dirties each of them,
// which made a projection of a 10,000-resident activity take 0.1-14 s).
func (p *entityRows) diffAttendance(ctx context.Context, tx pgx.Tx) error {
	if len(p.att) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(p.att))
	// The activities' rows are locked first, in key order: a commit that
	// moves the same activity at the same time waits here, and what is
	// read below is what it left.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM activities WHERE site = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE`,
		p.site, ids); err != nil {
		return fmt.Errorf("lock activities: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT activity, resident, status, attended FROM activity_attendance
		WHERE site = $1 AND activity = ANY($2::text[])`, p.site, ids)
	if err != nil {
		return fmt.Errorf("read attendance: %w", err)
	}
	have := map[string]map[string]attendance{}
	var activity, resident string
	var a attendance
	_, err = pgx.ForEachRow(rows, []any{&activity, &resident, &a.status, &a.attended}, func() error {
		if have[activity] == nil {
			have[activity] = map[string]attendance{}
		}
		have[activity][resident] = a
		return nil
	})
	if err != nil {
		return fmt.Errorf("read attendance: %w", err)
	}
	for _, id := range ids {
		want, old := p.att[id], have[id]
		for _, r := range slices.Sorted(maps.Keys(old)) {
			if _, ok := want[r]; !ok {
				p.attDel.activities = append(p.attDel.activities, id)
				p.attDel.residents = append(p.attDel.residents, r)
			}
		}
		for _, r := range slices.Sorted(maps.Keys(want)) {
			if o, ok := old[r]; ok && o == want[r] {
				continue
			}
			p.attPut.activities = append(p.attPut.activities, id)
			p.attPut.residents = append(p.attPut.residents, r)
			p.attPut.statuses = append(p.attPut.statuses, want[r].status)
			p.attPut.attended = append(p.attPut.attended, want[r].attended)
		}
	}
	return nil
}

func (p *entityRows) addNotice(v *merge.NoticeView) error {
	view, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("view as JSON: %w", err)
	}
	n := &p.not
	n.ids = append(n.ids, v.ID)
	n.titles = append(n.titles, v.Title)
	n.categories = append(n.categories, v.Category)
	bs := v.Buildings
	if bs == nil {
		bs = []string{}
	}
	n.buildings = append(n.buildings, bs)
	n.expires = append(n.expires, msTime(v.Expires))
	n.updated = append(n.updated, v.Updated.Time())
	n.views = append(n.views, view)
	return nil
}

func (p *entityRows) addAlarm(v *merge.AlarmView) error {
	view, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("view as JSON: %w", err)
	}
	a := &p.alm
	a.ids = append(a.ids, v.ID)
	a.buildings = append(a.buildings, v.Building)
	a.sources = append(a.sources, v.Source)
	a.kinds = append(a.kinds, v.Kind)
	a.severities = append(a.severities, v.Severity)
	a.places = append(a.places, v.Place)
	a.ackedBy = append(a.ackedBy, v.AckedBy)
	a.active = append(a.active, v.Active)
	a.open = append(a.open, v.Open)
	a.acked = append(a.acked, v.Acked)
	a.first = append(a.first, v.First.Time())
	a.last = append(a.last, v.Last.Time())
	a.cleared = append(a.cleared, hlcTime(v.Cleared))
	a.closed = append(a.closed, hlcTime(v.Closed))
	a.views = append(a.views, view)
	return nil
}

// childTables are the tables whose rows belong to a row of an entity
// table: the table and its column naming the parent's id.
var childTables = map[string]struct{ table, parent string }{
	"activities": {"activity_attendance", "activity"},
}

// queue adds the rows' statements to b: deletions, then each
// parent table's rows before its children's.
func (p *entityRows) queue(b *pgx.Batch) {
	for _, t := range slices.Sorted(maps.Keys(p.deleted)) {
		// The children go first, as a cascade would take them: no foreign
		// key does (its check per row written cost more than the rows).
		if child, ok := childTables[t]; ok {
			b.Queue("DELETE FROM "+child.table+" WHERE site = $1 AND "+child.parent+" = ANY($2::text[])", p.site, p.deleted[t])
		}
		// Table names come from entityTable, never from the change.
		b.Queue("DELETE FROM "+t+" WHERE site = $1 AND id = ANY($2::text[])", p.site, p.deleted[t])
	}
	if r := &p.rep; len(r.ids) > 0 {
		b.Queue(`INSERT INTO reports (site, id, number, status, category, title, building, unit, votes, note,
				merged_into, created_at, updated_at, closed_at, view)
			SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::text[], $9::bigint[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
				$14::timestamptz[], $15::json[])
			ON CONFLICT (site, id) DO UPDATE SET number = EXCLUDED.number, status = EXCLUDED.status,
				category = EXCLUDED.category, title = EXCLUDED.title, building = EXCLUDED.building,
				unit = EXCLUDED.unit, votes = EXCLUDED.votes, note = EXCLUDED.note,
				merged_into = EXCLUDED.merged_into, created_at = EXCLUDED.created_at,
				updated_at = EXCLUDED.updated_at, closed_at = EXCLUDED.closed_at, view = EXCLUDED.view`,
			p.site, r.ids, r.numbers, r.statuses, r.categories, r.titles, r.buildings, r.units, r.votes,
			r.notes, r.mergedInto, r.created, r.updated, r.closed, r.views)
	}
	if a := &p.act; len(a.ids) > 0 {
		b.Queue(`INSERT INTO activities (site, id, title, kind, venue, start_at, end_at, capacity, seats_left,
				confirmed, waitlisted, attended, cancelled, updated_at, view)
			SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
				$7::timestamptz[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
				$13::boolean[], $14::timestamptz[], $15::json[])
			ON CONFLICT (site, id) DO UPDATE SET title = EXCLUDED.title, kind = EXCLUDED.kind,
				venue = EXCLUDED.venue, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
				capacity = EXCLUDED.capacity, seats_left = EXCLUDED.seats_left, confirmed = EXCLUDED.confirmed,
				waitlisted = EXCLUDED.waitlisted, attended = EXCLUDED.attended, cancelled = EXCLUDED.cancelled,
				updated_at = EXCLUDED.updated_at, view = EXCLUDED.view`,
			p.site, a.ids, a.titles, a.kinds, a.venues, a.starts, a.ends, a.capacity, a.seatsLeft,
			a.confirmed, a.waitlisted, a.attendedN, a.cancelled, a.updated, a.views)
		if d := &p.attDel; len(d.residents) > 0 {
			b.Queue(`DELETE FROM activity_attendance x USING unnest($2::text[], $3::text[]) AS d(activity, resident)
				WHERE x.site = $1 AND x.activity = d.activity AND x.resident = d.resident`,
				p.site, d.activities, d.residents)
		}
		if t := &p.attPut; len(t.residents) > 0 {
			b.Queue(`INSERT INTO activity_attendance (site, activity, resident, status, attended)
				SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[])
				ON CONFLICT (site, activity, resident) DO UPDATE SET status = EXCLUDED.status,
					attended = EXCLUDED.attended`,
				p.site, t.activities, t.residents, t.statuses, t.attended)
		}
	}
	if n := &p.not; len(n.ids) > 0 {
		// unnest would flatten a text[][]: the buildings go as JSON arrays.
		buildings := make([][]byte, len(n.buildings))
		for i, bs := range n.buildings {
			buildings[i], _ = json.Marshal(bs) // []string always encodes
		}
		b.Queue(`INSERT INTO notices (site, id, title, category, buildings, expires_at, updated_at, view)
			SELECT $1, id, title, category, ARRAY(SELECT jsonb_array_elements_text(buildings)), expires_at,
				updated_at, view
			FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[], $7::timestamptz[],
				$8::json[]) AS n(id, title, category, buildings, expires_at, updated_at, view)
			ON CONFLICT (site, id) DO UPDATE SET title = EXCLUDED.title, category = EXCLUDED.category,
				buildings = EXCLUDED.buildings, expires_at = EXCLUDED.expires_at,
				updated_at = EXCLUDED.updated_at, view = EXCLUDED.view`,
			p.site, n.ids, n.titles, n.categories, buildings, n.expires, n.updated, n.views)
	}
	if a := &p.alm; len(a.ids) > 0 {
		b.Queue(`INSERT INTO alarms (site, id, building, source, kind, severity, place, acked_by, active, open,
				acked, first_at, last_at, cleared_at, closed_at, view)
			SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::text[], $9::boolean[], $10::boolean[], $11::boolean[], $12::timestamptz[],
				$13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::json[])
			ON CONFLICT (site, id) DO UPDATE SET building = EXCLUDED.building, source = EXCLUDED.source,
				kind = EXCLUDED.kind, severity = EXCLUDED.severity, place = EXCLUDED.place,
				acked_by = EXCLUDED.acked_by, active = EXCLUDED.active, open = EXCLUDED.open,
				acked = EXCLUDED.acked, first_at = EXCLUDED.first_at, last_at = EXCLUDED.last_at,
				cleared_at = EXCLUDED.cleared_at, closed_at = EXCLUDED.closed_at, view = EXCLUDED.view`,
			p.site, a.ids, a.buildings, a.sources, a.kinds, a.severities, a.places, a.ackedBy, a.active,
			a.open, a.acked, a.first, a.last, a.cleared, a.closed, a.views)
	}
}

// hlcTime is t's wall time, nil for the zero timestamp (not set).
func hlcTime(t hlc.Timestamp) *time.Time {
	if t == 0 {
		return nil
	}
	v := t.Time()
	return &v
}

// msTime is Unix milliseconds as a time, nil for 0 (not set).
func msTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	v := time.UnixMilli(ms).UTC()
	return &v
}
