// Package transporttest holds the contract suite of the hub's transport
// (ingest.Transport): the same behaviours checked against the embedded
// broker and against the external-broker client with Mosquitto. It has
// only tests.
package transporttest
