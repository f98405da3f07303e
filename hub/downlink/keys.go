package downlink

// KeyPrefixes lists the key prefix the change log takes in the hub's
// store: every other package's keys there must start with none of them,
// nor be a prefix of one (a test checks).
func KeyPrefixes() []string { return []string{prefix} }
