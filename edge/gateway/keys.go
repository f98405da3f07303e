package gateway

// KeyPrefixes lists the keys and key prefixes the gateway writes in the
// edge's store (the access list, stored in pieces under its key when
// large, and the alarms in force): every other package's keys there must
// start with none of them, nor be a prefix of one (a test checks).
func KeyPrefixes() []string {
	return []string{keyList, prefixAlarm}
}
