package registry

import "time"

// SetNow sets the registry's clock, for the tests of token expiry.
func SetNow(r *Registry, now func() time.Time) { r.now = now }
