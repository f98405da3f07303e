package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"linli/hub/registry"
)

// RegistryStore keeps the device registry in the tables enrolled_devices,
// enrolled_device_past_keys, enrollment_tokens and resident_keys.
type RegistryStore struct{ s *Store }

// Registry is the store of the hub's device registry.
func (s *Store) Registry() RegistryStore { return RegistryStore{s} }

var _ registry.Store = RegistryStore{}

func (r RegistryStore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.s.timeout)
}

// Devices implements registry.Store. Devices and past keys are read in
// one snapshot, so a replacement committed meanwhile is seen whole or not
// at all.
func (r RegistryStore) Devices() ([]registry.Device, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	tx, err := r.s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("load enrolled devices: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // read only: nothing to commit
	rows, err := tx.Query(ctx, `SELECT id, site, role, enrolled_at, revoked_at, public_key,
		pass_salt, pass_hash, mosquitto, seq_base FROM enrolled_devices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("load enrolled devices: %w", err)
	}
	defer rows.Close()
	var out []registry.Device
	byID := map[string]int{}
	for rows.Next() {
		var d registry.Device
		var enrolled, revoked *time.Time
		var base int64
		if err := rows.Scan(&d.ID, &d.Site, &d.Role, &enrolled, &revoked, &d.PublicKey,
			&d.PassSalt, &d.PassHash, &d.Mosquitto, &base); err != nil {
			return nil, fmt.Errorf("load enrolled devices: %w", err)
		}
		d.Enrolled, d.Revoked, d.SeqBase = fromNull(enrolled), fromNull(revoked), uint64(base)
		byID[d.ID] = len(out)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load enrolled devices: %w", err)
	}
	rows.Close()
	keys, err := tx.Query(ctx, `SELECT device, public_key, pass_salt, pass_hash, mosquitto,
		seq_from, seq_below, replaced_at, revoked FROM enrolled_device_past_keys ORDER BY device, n`)
	if err != nil {
		return nil, fmt.Errorf("load past device keys: %w", err)
	}
	defer keys.Close()
	for keys.Next() {
		var id string
		var k registry.PastKey
		var from, below int64
		if err := keys.Scan(&id, &k.PublicKey, &k.PassSalt, &k.PassHash, &k.Mosquitto,
			&from, &below, &k.Replaced, &k.Revoked); err != nil {
			return nil, fmt.Errorf("load past device keys: %w", err)
		}
		k.From, k.Below, k.Replaced = uint64(from), uint64(below), k.Replaced.UTC()
		i, ok := byID[id]
		if !ok {
			continue // the foreign key keeps this from happening
		}
		out[i].Previous = append(out[i].Previous, k)
	}
	if err := keys.Err(); err != nil {
		return nil, fmt.Errorf("load past device keys: %w", err)
	}
	return out, nil
}

// PutToken implements registry.Store. Tokens expired for over an hour are
// deleted on the way (a late use meanwhile hears that its token expired).
func (r RegistryStore) PutToken(digest string, p registry.Pending) error {
	ctx, cancel := r.ctx()
	defer cancel()
	return pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM enrollment_tokens WHERE expires_at < now() - interval '1 hour'"); err != nil {
			return fmt.Errorf("delete expired enrollment tokens: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO enrollment_tokens (digest, device, site, role, replace, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, digest, p.ID, p.Site, p.Role, p.Replace, p.Expires); err != nil {
			return fmt.Errorf("store enrollment token: %w", err)
		}
		return nil
	})
}

// Enroll implements registry.Store. The token's row is deleted under a
// row lock, so of two enrollments with one token only one finds it.
func (r RegistryStore) Enroll(digest string, build func(registry.Pending) (registry.Device, error)) (registry.Device, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	var d registry.Device
	expired := false
	err := pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		var p registry.Pending
		err := tx.QueryRow(ctx, `DELETE FROM enrollment_tokens WHERE digest = $1
			RETURNING device, site, role, replace, expires_at`, digest).Scan(&p.ID, &p.Site, &p.Role, &p.Replace, &p.Expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return registry.ErrTokenUnknown
		}
		if err != nil {
			return fmt.Errorf("take enrollment token: %w", err)
		}
		p.Expires = p.Expires.UTC()
		if d, err = build(p); err != nil {
			if errors.Is(err, registry.ErrTokenExpired) {
				expired = true
				return nil // commit the token's deletion
			}
			return err
		}
		return putDevice(ctx, tx, d)
	})
	if err == nil && expired {
		return registry.Device{}, registry.ErrTokenExpired
	}
	return d, err
}

// PutDevice implements registry.Store.
func (r RegistryStore) PutDevice(d registry.Device) error {
	ctx, cancel := r.ctx()
	defer cancel()
	return pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error { return putDevice(ctx, tx, d) })
}

// putDevice writes d's row and replaces its past keys.
func putDevice(ctx context.Context, tx pgx.Tx, d registry.Device) error {
	if d.SeqBase > math.MaxInt64 {
		return fmt.Errorf("device %s: seq base %d is beyond PostgreSQL's bigint", d.ID, d.SeqBase)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO enrolled_devices
		(id, site, role, enrolled_at, revoked_at, public_key, pass_salt, pass_hash, mosquitto, seq_base)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET site = excluded.site, role = excluded.role,
			enrolled_at = excluded.enrolled_at, revoked_at = excluded.revoked_at,
			public_key = excluded.public_key, pass_salt = excluded.pass_salt, pass_hash = excluded.pass_hash,
			mosquitto = excluded.mosquitto, seq_base = excluded.seq_base`,
		d.ID, d.Site, d.Role, toNull(d.Enrolled), toNull(d.Revoked), d.PublicKey, d.PassSalt, d.PassHash,
		d.Mosquitto, int64(d.SeqBase)); err != nil {
		return fmt.Errorf("store device %s: %w", d.ID, err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM enrolled_device_past_keys WHERE device = $1", d.ID); err != nil {
		return fmt.Errorf("store past keys of %s: %w", d.ID, err)
	}
	for n, k := range d.Previous {
		if k.From > math.MaxInt64 || k.Below > math.MaxInt64 {
			return fmt.Errorf("device %s: past key %d numbers beyond PostgreSQL's bigint", d.ID, n)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO enrolled_device_past_keys
			(device, n, public_key, pass_salt, pass_hash, mosquitto, seq_from, seq_below, replaced_at, revoked)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			d.ID, n, k.PublicKey, k.PassSalt, k.PassHash, k.Mosquitto, int64(k.From), int64(k.Below), k.Replaced, k.Revoked); err != nil {
			return fmt.Errorf("store past key %d of %s: %w", n, d.ID, err)
		}
	}
	return nil
}

// ResidentKey implements registry.Store.
func (r RegistryStore) ResidentKey(site string, newKey []byte) ([]byte, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	if _, err := r.s.pool.Exec(ctx, "INSERT INTO resident_keys (site, key) VALUES ($1, $2) ON CONFLICT (site) DO NOTHING",
		site, newKey); err != nil {
		return nil, err
	}
	var key []byte
	if err := r.s.pool.QueryRow(ctx, "SELECT key FROM resident_keys WHERE site = $1", site).Scan(&key); err != nil {
		return nil, err
	}
	return key, nil
}

// toNull is t for a timestamptz column, NULL for the zero time.
func toNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromNull is a nullable timestamptz as a time in UTC, zero for NULL.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
