package api

import (
	"context"
	"net/http"
)

// principalKey keys a request's authentication in its context.
type principalKey struct{}

// authResult is who a request's credentials name, or why they failed.
type authResult struct {
	p   Principal
	err error
}

// NewContextWithPrincipal returns ctx carrying the outcome of
// authenticating a request: the principal, and the error if its
// credentials did not check out.
func NewContextWithPrincipal(ctx context.Context, p Principal, err error) context.Context {
	return context.WithValue(ctx, principalKey{}, authResult{p, err})
}

// PrincipalFromContext returns the authentication stored by
// NewContextWithPrincipal; ok is false when there is none.
func PrincipalFromContext(ctx context.Context) (p Principal, err error, ok bool) {
	res, ok := ctx.Value(principalKey{}).(authResult)
	return res.p, res.err, ok
}

// WithPrincipal authenticates each request once, with auth, and passes it
// on with the outcome in its context, where the audit log, the role
// checks and the site checks all read it: credentials are looked up once
// per request however many layers ask. A request that already carries an
// outcome (an outer WithPrincipal) is passed on as it is.
func WithPrincipal(auth Authorizer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := PrincipalFromContext(r.Context()); ok || auth == nil {
			next.ServeHTTP(w, r)
			return
		}
		p, err := auth.Authenticate(r)
		next.ServeHTTP(w, r.WithContext(NewContextWithPrincipal(r.Context(), p, err)))
	})
}
