package operators

import (
	"fmt"
	"slices"
	"time"

	"linli/hub/api"
	"linli/shared/event"
)

// tokenPrefix starts every operator API token, so a leaked one is easy to
// find in logs and code, and the admin token is never mistaken for one.
const tokenPrefix = "lnk_"

// Token is an API token for scripts: it acts for its owner, narrowed to
// Role and Sites. The secret is shown once, at creation.
type Token struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Owner    string     `json:"owner"`
	Role     string     `json:"role,omitempty"`  // "": the owner's
	Sites    []string   `json:"sites,omitempty"` // empty: the owner's
	Created  time.Time  `json:"created"`
	LastUsed *time.Time `json:"last_used,omitempty"`
}

// NewToken asks for a token.
type NewToken struct {
	Name  string   `json:"name"`
	Role  string   `json:"role"`
	Sites []string `json:"sites"`
}

// CreateToken issues a token acting for p (narrowed as asked) and returns
// it with its secret.
func (s *Service) CreateToken(p api.Principal, n NewToken) (Token, string, error) {
	if n.Name == "" || len(n.Name) > 64 {
		return Token{}, "", &event.FieldError{Field: "name", Msg: "must be 1 to 64 characters"}
	}
	if n.Role != "" {
		if err := validRole(n.Role); err != nil {
			return Token{}, "", err
		}
		if roleRank(n.Role) > roleRank(p.Role) {
			return Token{}, "", &event.FieldError{Field: "role", Msg: "a token cannot do more than its owner"}
		}
	}
	for _, site := range n.Sites {
		if err := event.ValidID(site); err != nil {
			return Token{}, "", &event.FieldError{Field: "sites", Msg: err.Error()}
		}
		if !p.Sees(site) {
			return Token{}, "", &event.FieldError{Field: "sites", Msg: "site " + site + " is outside your scope"}
		}
	}
	id := secret()[:12]
	tok := tokenPrefix + id + "_" + secret()
	t := Token{ID: id, Name: n.Name, Owner: p.Name, Role: n.Role, Sites: slices.Clone(n.Sites), Created: s.stamp()}
	if err := s.st.PutToken(digest(tok), t); err != nil {
		return Token{}, "", fmt.Errorf("store token: %w", err)
	}
	return t, tok, nil
}

// Tokens lists the tokens of owner ("" for everyone's) by creation.
func (s *Service) Tokens(owner string) ([]Token, error) {
	all, err := s.st.Tokens()
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := []Token{}
	for _, t := range all {
		if owner == "" || t.Owner == owner {
			s.mu.Lock()
			if at, ok := s.lastUsed[t.ID]; ok {
				t.LastUsed = &at
			}
			s.mu.Unlock()
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Token) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// RevokeToken deletes a token by id if owner ("" for any) holds it; it
// reports whether there was one.
func (s *Service) RevokeToken(owner, id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	n, err := s.st.DeleteTokens(owner, id)
	if err != nil {
		return false, fmt.Errorf("revoke token: %w", err)
	}
	return n > 0, nil
}
