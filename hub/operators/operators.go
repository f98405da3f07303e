// Package operators owns the people who run the hub: accounts with
// bcrypt-hashed passwords, roles and site scopes, dashboard sessions with
// CSRF tokens, API tokens for scripts, login rate limits, and the audit
// log of every operator write. Service implements api.Authorizer, so the
// admin token, operator API tokens and dashboard sessions all authenticate
// the same API.
package operators

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/bcrypt"

	"linli/hub/api"
	"linli/shared/event"
)

// AdminName is the principal of the admin token and of its sessions; no
// account may take it.
const AdminName = "admin"

// Errors.
var (
	ErrUnknown  = errors.New("no such operator")
	ErrExists   = errors.New("operator exists")
	ErrPassword = errors.New("wrong name or password")
	ErrDisabled = errors.New("account disabled")
)

// Account is an operator's login. Hash never leaves the package.
type Account struct {
	Name     string    `json:"name"`
	Display  string    `json:"display,omitempty"`
	Role     string    `json:"role"`
	Sites    []string  `json:"sites"` // empty: every site
	Disabled bool      `json:"disabled,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Hash     []byte    `json:"hash,omitempty"`
}

func (a Account) public() Account {
	a.Hash = nil
	if a.Sites == nil {
		a.Sites = []string{}
	}
	return a
}

// Options configure a Service.
type Options struct {
	// AdminToken is <data>/admin.token: it authenticates as admin
	// everywhere and is the first login of a new hub.
	AdminToken string
	// Cost is the bcrypt cost (default bcrypt.DefaultCost+1; tests lower it).
	Cost int
	// SessionTTL is how long a dashboard session lasts (default 12h).
	SessionTTL time.Duration
	// Limits bound failed logins (default DefaultLimits).
	Limits Limits
	// TrustedProxies are the reverse proxies whose X-Forwarded-For or
	// X-Real-IP name the client (for the login limits and the audit log);
	// from any other peer those headers are ignored.
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	Now            func() time.Time
}

// Service is the operator registry and the API's Authorizer.
type Service struct {
	st   Store
	opts Options
	log  *slog.Logger

	limiter LoginLimiter
	// dummy is a hash to compare against for unknown names, so a login
	// takes as long whether or not the name exists.
	dummy []byte

	// authentications counts Authenticate calls: each looks credentials
	// up in the store, so a request should make one.
	authentications atomic.Uint64

	mu       sync.Mutex
	lastUsed map[string]time.Time // token id → last use (not persisted)
}

var _ api.Authorizer = (*Service)(nil)

// OpenBadger opens the service on the hub's Badger store, redacting audit
// entries an older hub stored with secrets in clear.
func OpenBadger(db *badger.DB, opts Options) (*Service, error) {
	st, n, err := NewBadgerStore(db)
	if err != nil {
		return nil, err
	}
	s, err := Open(st, opts)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		s.log.Warn("audit entries stored with secrets in clear were redacted", "entries", n)
	}
	return s, nil
}

// Open prepares the service on st.
func Open(st Store, opts Options) (*Service, error) {
	if opts.Cost == 0 {
		opts.Cost = bcrypt.DefaultCost + 1
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.AdminToken) < 32 {
		return nil, errors.New("operators: the admin token is missing or too short")
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password of anyone"), opts.Cost)
	if err != nil {
		return nil, fmt.Errorf("operators: %w", err)
	}
	s := &Service{st: st, opts: opts, log: opts.Logger, limiter: st.LoginLimiter(opts.Limits, opts.Now),
		dummy: dummy, lastUsed: map[string]time.Time{}}
	return s, nil
}

// Roles in order of what they allow.
var Roles = []string{api.RoleViewer, api.RoleOperator, api.RoleAdmin}

func roleRank(r string) int { return slices.Index(Roles, r) }

func validRole(r string) error {
	if roleRank(r) < 0 {
		return &event.FieldError{Field: "role", Msg: fmt.Sprintf("must be one of %v", Roles)}
	}
	return nil
}

func validSites(role string, sites []string) error {
	if len(sites) > 64 {
		return &event.FieldError{Field: "sites", Msg: "at most 64"}
	}
	for _, s := range sites {
		if err := event.ValidID(s); err != nil {
			return &event.FieldError{Field: "sites", Msg: err.Error()}
		}
	}
	if role == api.RoleAdmin && len(sites) > 0 {
		// Admins enroll devices and set access lists for any site.
		return &event.FieldError{Field: "sites", Msg: "an admin covers every site; leave sites empty"}
	}
	return nil
}

func validName(name string) error {
	if err := event.ValidID(name); err != nil {
		return &event.FieldError{Field: "name", Msg: err.Error()}
	}
	if name == AdminName || name == "hub" || len(name) > 3 && name[:4] == "hub-" {
		return &event.FieldError{Field: "name", Msg: name + " is reserved"}
	}
	if len(name) > 64 {
		return &event.FieldError{Field: "name", Msg: "at most 64 characters"}
	}
	return nil
}

// validPassword bounds passwords: bcrypt reads 72 bytes at most, and a
// short one falls to guessing however slow the hash.
func validPassword(p string) error {
	if len(p) < 10 || len(p) > 72 {
		return &event.FieldError{Field: "password", Msg: "must be 10 to 72 bytes"}
	}
	return nil
}

// NewAccount is what an admin gives to create an operator.
type NewAccount struct {
	Name     string   `json:"name"`
	Display  string   `json:"display"`
	Password string   `json:"password"`
	Role     string   `json:"role"`
	Sites    []string `json:"sites"`
}

// Create adds an account.
func (s *Service) Create(n NewAccount) (Account, error) {
	if err := firstErr(validName(n.Name), validPassword(n.Password), validRole(n.Role), validSites(n.Role, n.Sites)); err != nil {
		return Account{}, err
	}
	if len(n.Display) > 64 {
		return Account{}, &event.FieldError{Field: "display", Msg: "at most 64 characters"}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(n.Password), s.opts.Cost)
	if err != nil {
		return Account{}, fmt.Errorf("hash password: %w", err)
	}
	now := s.stamp()
	a := Account{Name: n.Name, Display: n.Display, Role: n.Role, Sites: slices.Clone(n.Sites), Created: now, Updated: now, Hash: hash}
	slices.Sort(a.Sites)
	a.Sites = slices.Compact(a.Sites)
	if err := s.st.CreateAccount(a); err != nil {
		return Account{}, fmt.Errorf("create operator %s: %w", n.Name, err)
	}
	return a.public(), nil
}

// Change is an admin's edit of an account; nil fields stay as they are.
type Change struct {
	Display  *string   `json:"display"`
	Password *string   `json:"password"`
	Role     *string   `json:"role"`
	Sites    *[]string `json:"sites"`
	Disabled *bool     `json:"disabled"`
}

// Update edits an account. Disabling it or changing its password ends its
// sessions.
func (s *Service) Update(name string, c Change) (Account, error) {
	var hash []byte
	if c.Password != nil {
		if err := validPassword(*c.Password); err != nil {
			return Account{}, err
		}
		var err error
		if hash, err = bcrypt.GenerateFromPassword([]byte(*c.Password), s.opts.Cost); err != nil {
			return Account{}, fmt.Errorf("hash password: %w", err)
		}
	}
	out, err := s.st.UpdateAccount(name, func(a *Account) error {
		if c.Display != nil {
			a.Display = *c.Display
		}
		if c.Role != nil {
			a.Role = *c.Role
		}
		if c.Sites != nil {
			a.Sites = slices.Clone(*c.Sites)
			slices.Sort(a.Sites)
			a.Sites = slices.Compact(a.Sites)
		}
		if c.Disabled != nil {
			a.Disabled = *c.Disabled
		}
		if hash != nil {
			a.Hash = hash
		}
		if err := firstErr(validRole(a.Role), validSites(a.Role, a.Sites)); err != nil {
			return err
		}
		a.Updated = s.stamp()
		return nil
	})
	if err != nil {
		return Account{}, fmt.Errorf("update operator %s: %w", name, err)
	}
	if hash != nil || out.Disabled {
		if err := s.endSessions(name); err != nil {
			return Account{}, err
		}
	}
	return out.public(), nil
}

// Delete removes an account with its sessions and API tokens.
func (s *Service) Delete(name string) error {
	if err := s.st.DeleteAccount(name); err != nil {
		return fmt.Errorf("delete operator %s: %w", name, err)
	}
	if err := s.endSessions(name); err != nil {
		return err
	}
	if _, err := s.st.DeleteTokens(name, ""); err != nil {
		return fmt.Errorf("delete tokens of %s: %w", name, err)
	}
	return nil
}

// Account returns one account without its hash.
func (s *Service) Account(name string) (Account, error) {
	a, err := s.st.Account(name)
	if err != nil {
		return Account{}, err
	}
	return a.public(), nil
}

// Accounts lists every account by name.
func (s *Service) Accounts() ([]Account, error) {
	accts, err := s.st.Accounts()
	if err != nil {
		return nil, fmt.Errorf("list operators: %w", err)
	}
	out := make([]Account, 0, len(accts))
	for _, a := range accts {
		out = append(out, a.public())
	}
	return out, nil
}

// checkPassword verifies a login, in constant time whether or not the
// account exists.
func (s *Service) checkPassword(name, password string) (Account, error) {
	a, err := s.st.Account(name)
	if errors.Is(err, ErrUnknown) {
		if cerr := bcrypt.CompareHashAndPassword(s.dummy, []byte(password)); cerr == nil {
			return Account{}, errors.New("operators: the dummy hash matched") // cannot happen
		}
		return Account{}, ErrPassword
	}
	if err != nil {
		return Account{}, err
	}
	if bcrypt.CompareHashAndPassword(a.Hash, []byte(password)) != nil {
		return Account{}, ErrPassword
	}
	if a.Disabled {
		return Account{}, ErrDisabled
	}
	return a, nil
}

// SetPassword changes an operator's own password after checking the old
// one; their other sessions end.
func (s *Service) SetPassword(name, old, password string) error {
	if _, err := s.checkPassword(name, old); err != nil {
		return err
	}
	_, err := s.Update(name, Change{Password: &password})
	return err
}

func (s *Service) isAdminToken(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.AdminToken)) == 1
}

// principal is what an account may do now.
func principalOf(a Account, via string) api.Principal {
	return api.Principal{Name: a.Name, Role: a.Role, Admin: a.Role == api.RoleAdmin, Sites: slices.Clone(a.Sites), Via: via}
}

func adminPrincipal(via string) api.Principal {
	return api.Principal{Name: AdminName, Role: api.RoleAdmin, Admin: true, Via: via}
}

// stamp is the time a record is marked with: UTC, in microseconds, as
// every store keeps it (PostgreSQL's timestamps have no nanoseconds).
func (s *Service) stamp() time.Time { return s.opts.Now().UTC().Truncate(time.Microsecond) }

// secret is a random 32-byte value in hex.
func secret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// People lists the accounts as the API names them: assignees of their
// sites' reports and display names in report histories. A store that
// cannot be read lists nobody, and the error is logged.
func (s *Service) People() []api.Person {
	accts, err := s.Accounts()
	if err != nil {
		s.log.Warn("list operators for assignees", "err", err)
		return nil
	}
	out := make([]api.Person, 0, len(accts))
	for _, a := range accts {
		out = append(out, api.Person{Name: a.Name, Display: a.Display, Role: a.Role, Sites: a.Sites, Disabled: a.Disabled})
	}
	return out
}
