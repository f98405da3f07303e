package outbox

// KeyPrefixes lists the keys and key prefixes the outbox writes in the
// edge's store: every other package's keys there must start with none of
// them, nor be a prefix of one (a test checks).
func KeyPrefixes() []string {
	return []string{prefixEvent, keyLast, keyAcked, keyHLC, keyDevice, keyHoles, keySettle, keyHorizon}
}
