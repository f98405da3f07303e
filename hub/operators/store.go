package operators

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"linli/shared/kv"
)

// Store is what the operator registry keeps durably: accounts, dashboard
// sessions and API tokens (both under the SHA-256 of their secret), and
// the audit log. BadgerStore keeps them in the hub's Badger store;
// PostgresStore in tables.
type Store interface {
	// CreateAccount stores a new account; ErrExists if the name is taken.
	CreateAccount(a Account) error
	// UpdateAccount applies edit to the stored account and stores the
	// result, in one transaction; ErrUnknown if there is none. An error
	// from edit changes nothing and is returned as it is.
	UpdateAccount(name string, edit func(*Account) error) (Account, error)
	// DeleteAccount removes an account; ErrUnknown if there is none.
	DeleteAccount(name string) error
	// Account returns one account (with its hash); ErrUnknown if none.
	Account(name string) (Account, error)
	// Accounts lists every account by name.
	Accounts() ([]Account, error)

	// PutSession stores a session for ttl.
	PutSession(digest string, sess Session, ttl time.Duration) error
	// Session returns a stored session; errNotFound if there is none.
	// Whether it has expired is the caller's business.
	Session(digest string) (Session, error)
	// DeleteSession ends one session.
	DeleteSession(digest string) error
	// DeleteSessions ends every session of an account (not the admin
	// token's sessions, which carry its name but no account).
	DeleteSessions(name string) error

	// PutToken stores an API token.
	PutToken(digest string, t Token) error
	// Token returns a stored token; errNotFound if there is none.
	Token(digest string) (Token, error)
	// Tokens lists every token.
	Tokens() ([]Token, error)
	// DeleteTokens deletes the tokens of owner ("" for anyone's) with id
	// ("" for every id) and reports how many it deleted.
	DeleteTokens(owner, id string) (int, error)

	// AppendAudit numbers e after the newest entry, stores it and
	// returns it numbered.
	AppendAudit(e Entry) (Entry, error)
	// AuditLog returns up to limit entries numbered below before (0: the
	// newest), newest first, of who ("" for everyone).
	AuditLog(who string, before uint64, limit int) ([]Entry, error)

	// LoginLimiter counts failed logins under l, timed by now.
	LoginLimiter(l Limits, now func() time.Time) LoginLimiter
}

// errNotFound is a store's answer for a session or token it does not hold.
var errNotFound = errors.New("not found")

// BadgerStore keeps the operator registry in the hub's Badger store. Key
// layout (operators are not per site, so their keys carry no site prefix):
//
//	op/acct/{name}        Account (JSON)
//	op/sess/{sha256 hex}  Session (JSON), expiring with it; the cookie holds the preimage
//	op/tok/{sha256 hex}   Token (JSON); the script holds the preimage
//	op/audit/{seq:8}      Entry (JSON)
//
// The hub's Badger store does not detect conflicts between transactions
// (kv.Open), so read-then-writes (an account's creation and edits, the
// audit log's numbering) are serialised here: two creations of one name
// would otherwise both succeed, the second overwriting the first.
type BadgerStore struct {
	db *badger.DB

	mu       sync.Mutex // held by every read-then-write
	auditSeq uint64     // the newest audit entry's number
}

const (
	prefixAccount = "op/acct/"
	prefixSession = "op/sess/"
	prefixToken   = "op/tok/"
	prefixAudit   = "op/audit/"
)

var _ Store = (*BadgerStore)(nil)

// NewBadgerStore keeps the operator registry in db. It redacts audit
// entries an older hub stored with secrets in clear (see
// RedactStoredAudit) and reports how many it rewrote.
func NewBadgerStore(db *badger.DB) (*BadgerStore, int, error) {
	s := &BadgerStore{db: db}
	err := db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix, o.Reverse, o.PrefetchValues = []byte(prefixAudit), true, false
		it := txn.NewIterator(o)
		defer it.Close()
		it.Seek(append([]byte(prefixAudit), 0xff))
		if it.Valid() {
			k := it.Item().Key()[len(prefixAudit):]
			if len(k) == 8 {
				for _, b := range k {
					s.auditSeq = s.auditSeq<<8 | uint64(b)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("operators: load audit log: %w", err)
	}
	n, err := RedactStoredAudit(db)
	if err != nil {
		return nil, 0, fmt.Errorf("operators: %w", err)
	}
	return s, n, nil
}

// CreateAccount implements Store.
func (s *BadgerStore) CreateAccount(a Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(prefixAccount + a.Name)); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return putJSON(txn, prefixAccount+a.Name, a)
	})
}

// UpdateAccount implements Store.
func (s *BadgerStore) UpdateAccount(name string, edit func(*Account) error) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out Account
	err := s.db.Update(func(txn *badger.Txn) error {
		a, err := getAccount(txn, name)
		if err != nil {
			return err
		}
		if err := edit(&a); err != nil {
			return err
		}
		out = a
		return putJSON(txn, prefixAccount+name, a)
	})
	return out, err
}

// DeleteAccount implements Store.
func (s *BadgerStore) DeleteAccount(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(txn *badger.Txn) error {
		if _, err := getAccount(txn, name); err != nil {
			return err
		}
		return txn.Delete([]byte(prefixAccount + name))
	})
}

// Account implements Store.
func (s *BadgerStore) Account(name string) (Account, error) {
	var a Account
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		a, err = getAccount(txn, name)
		return err
	})
	return a, err
}

// Accounts implements Store.
func (s *BadgerStore) Accounts() ([]Account, error) {
	var out []Account
	err := scan(s.db, prefixAccount, func(_ []byte, v []byte) error {
		var a Account
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// PutSession implements Store.
func (s *BadgerStore) PutSession(digest string, sess Session, ttl time.Duration) error {
	b, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry([]byte(prefixSession+digest), b).WithTTL(ttl))
	})
}

// Session implements Store.
func (s *BadgerStore) Session(digest string) (Session, error) {
	var sess Session
	err := getJSON(s.db, prefixSession+digest, &sess)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Session{}, errNotFound
	}
	return sess, err
}

// DeleteSession implements Store.
func (s *BadgerStore) DeleteSession(digest string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(prefixSession + digest)) })
}

// DeleteSessions implements Store.
func (s *BadgerStore) DeleteSessions(name string) error {
	var keys [][]byte
	err := scan(s.db, prefixSession, func(k, v []byte) error {
		var sess Session
		if err := json.Unmarshal(v, &sess); err != nil {
			return err
		}
		if !sess.Admin && sess.Name == name {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return deleteKeys(s.db, keys)
}

// PutToken implements Store.
func (s *BadgerStore) PutToken(digest string, t Token) error {
	t.LastUsed = nil // kept in memory only
	return s.db.Update(func(txn *badger.Txn) error { return putJSON(txn, prefixToken+digest, t) })
}

// Token implements Store.
func (s *BadgerStore) Token(digest string) (Token, error) {
	var t Token
	err := getJSON(s.db, prefixToken+digest, &t)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Token{}, errNotFound
	}
	return t, err
}

// Tokens implements Store.
func (s *BadgerStore) Tokens() ([]Token, error) {
	var out []Token
	err := scan(s.db, prefixToken, func(_, v []byte) error {
		var t Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// DeleteTokens implements Store.
func (s *BadgerStore) DeleteTokens(owner, id string) (int, error) {
	var keys [][]byte
	err := scan(s.db, prefixToken, func(k, v []byte) error {
		var t Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if (owner == "" || t.Owner == owner) && (id == "" || t.ID == id) {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(keys), deleteKeys(s.db, keys)
}

// AppendAudit implements Store.
func (s *BadgerStore) AppendAudit(e Entry) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Seq = s.auditSeq + 1
	if err := s.db.Update(func(txn *badger.Txn) error {
		return putJSON(txn, string(kv.Key(prefixAudit, kv.U64(e.Seq))), e)
	}); err != nil {
		return Entry{}, err
	}
	s.auditSeq = e.Seq
	return e, nil
}

// LoginLimiter implements Store: failures are counted in this process's
// memory, as one hub on its own Badger store has them all.
func (s *BadgerStore) LoginLimiter(l Limits, now func() time.Time) LoginLimiter {
	return newLimiter(l, now)
}

// AuditLog implements Store.
func (s *BadgerStore) AuditLog(who string, before uint64, limit int) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix, o.Reverse = []byte(prefixAudit), true
		it := txn.NewIterator(o)
		defer it.Close()
		start := append([]byte(prefixAudit), 0xff)
		if before > 0 {
			start = kv.Key(prefixAudit, kv.U64(before-1))
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			var e Entry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return err
			}
			if who == "" || e.Who == who {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

func getAccount(txn *badger.Txn, name string) (Account, error) {
	var a Account
	item, err := txn.Get([]byte(prefixAccount + name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return a, ErrUnknown
	}
	if err != nil {
		return a, err
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, &a) })
	return a, err
}

func putJSON(txn *badger.Txn, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set([]byte(key), b)
}

func getJSON(db *badger.DB, key string, v any) error {
	return db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	})
}

func scan(db *badger.DB, prefix string, f func(key, val []byte) error) error {
	return db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte(prefix)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if err := it.Item().Value(func(v []byte) error { return f(k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

func deleteKeys(db *badger.DB, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	return db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
