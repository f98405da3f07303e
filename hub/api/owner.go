package api

import (
	"net/http"

	"linli/shared/httpx"
)

// notOwnedRetry is the Retry-After of a write refused for a site another
// worker holds, in seconds: the lease renews every 2 s, so a site moving
// has an owner again by then.
const notOwnedRetry = "2"

// notOwnedAnswer is the body of that refusal: the site and the worker
// that takes its writes, for a client (or the operator's proxy) to send
// it there.
type notOwnedAnswer struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Site  string `json:"site"`
	Owner string `json:"owner,omitempty"`
}

// notOwned answers a write of a site another worker holds: 503 with
// Retry-After, naming the owner. Writes are not forwarded: a worker knows
// the others' ids from the leases, not their URLs, and a client retrying
// through the load balancer reaches the owner as often as any.
func (a *API) notOwned(w http.ResponseWriter, site string) {
	owner := ""
	if a.Owner != nil {
		owner = a.Owner(site)
	}
	msg := "site " + site + " is held by another worker"
	if owner != "" {
		msg = "site " + site + " is held by worker " + owner + "; send the write there, or retry"
	}
	w.Header().Set("Retry-After", notOwnedRetry)
	httpx.WriteJSON(w, http.StatusServiceUnavailable, notOwnedAnswer{Error: msg, Code: "not_owner", Site: site, Owner: owner})
}
