package registry

// KeyPrefixes lists the key prefixes the device registry takes in the
// hub's store: every other package's keys there must start with none of
// them, nor be a prefix of one (a test checks).
func KeyPrefixes() []string {
	return []string{prefixDevice, prefixToken, prefixRKey}
}
