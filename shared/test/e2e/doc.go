// Package e2e runs the built linli-hub and linli-edge binaries as real
// processes on loopback, with the embedded broker and with Mosquitto, and
// checks the contract's guarantees end to end. It imports neither edge nor
// hub: it knows them only through their commands and HTTP APIs.
package e2e
