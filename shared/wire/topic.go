// Package wire defines what edges and the hub say to each other over MQTT:
// topic names and the CBOR messages of the sync protocol.
package wire

import (
	"fmt"
	"strings"

	"linli/shared/event"
)

// Topic leaves under linli/v1/{site}/{device}/.
const (
	LeafUp     = "up"     // edge → hub: hello and event batches
	LeafAck    = "ack"    // hub → edge: end-to-end acks
	LeafDown   = "down"   // hub → edge: changes for this device
	LeafStatus = "status" // edge → all: retained online/offline
	// AllDevices stands for the device in a site-wide topic.
	AllDevices = "all"
	prefix     = "linli/v1/"
)

// Subscription filters the hub uses.
const (
	UpFilter     = prefix + "+/+/" + LeafUp
	StatusFilter = prefix + "+/+/" + LeafStatus
)

// Topic builds linli/v1/{site}/{device}/{leaf}.
func Topic(site, device, leaf string) string {
	return prefix + site + "/" + device + "/" + leaf
}

// SiteDown is the topic of changes for every device of a site.
func SiteDown(site string) string { return Topic(site, AllDevices, LeafDown) }

// SiteFilter matches every topic of one site, for hubs that own only some
// sites.
func SiteFilter(site, leaf string) string { return prefix + site + "/+/" + leaf }

// ParseTopic splits a Linli topic into site, device and leaf, refusing
// anything that is not exactly linli/v1/{site}/{device}/{leaf} with valid ids.
func ParseTopic(topic string) (site, device, leaf string, err error) {
	rest, ok := strings.CutPrefix(topic, prefix)
	if !ok {
		return "", "", "", fmt.Errorf("topic %q: not under %s", topic, prefix)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("topic %q: want %s{site}/{device}/{leaf}", topic, prefix)
	}
	for i, what := range []string{"site", "device"} {
		if err := event.ValidID(parts[i]); err != nil {
			return "", "", "", fmt.Errorf("topic %q: %s %w", topic, what, err)
		}
	}
	switch parts[2] {
	case LeafUp, LeafAck, LeafDown, LeafStatus:
	default:
		return "", "", "", fmt.Errorf("topic %q: unknown leaf %q", topic, parts[2])
	}
	return parts[0], parts[1], parts[2], nil
}
