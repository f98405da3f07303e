#!/usr/bin/env bash
# The demo behind `make run`: a hub, a kiosk and a gateway, each its own
# process, data under ./data/. Ctrl-C stops all three cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin
pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping…"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
	echo "stopped; data kept under ./data/"
	exit 0
}
trap stop INT TERM EXIT

wait_http() { # url, name
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$2 did not come up at $1" >&2
	return 1
}

mkdir -p data
"$bin/linli-hub" --config configs/hub.yaml & pids+=($!)
wait_http http://127.0.0.1:8080/healthz hub
# Enroll the demo devices once: each gets its own key and broker
# credentials, and signs everything it sends.
enroll() { # id site role data
	if [ ! -f "$4/identity/identity.json" ]; then
		# --replace: a demo edge whose data dir was wiped enrolls anew under
		# its id (the hub keeps its old key for what it already numbered).
		token=$("$bin/linli-hub" device add --replace --hub http://127.0.0.1:8080 --data ./data/hub --id "$1" --site "$2" --role "$3" | tail -n 1)
		"$bin/linli-edge" enroll --hub http://127.0.0.1:8080 --token "$token" --data "$4"
	fi
}
enroll kiosk-b1 xiangyang kiosk ./data/edge/kiosk-b1
enroll gw-b3 xiangyang gateway ./data/edge/gw-b3
# Building B3's access list, once: the simulator's residents' cards (the
# hub keeps only their keyed hashes; 26:99:1 stays a stranger).
if [ ! -f data/hub/.demo-access-list ]; then
	curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $(cat data/hub/admin.token)" \
		--data @configs/access-list-demo.json http://127.0.0.1:8080/api/v1/access-lists/xiangyang/B3
	touch data/hub/.demo-access-list
fi
"$bin/linli-edge" --config configs/kiosk.yaml & pids+=($!)
"$bin/linli-edge" --config configs/gateway.yaml & pids+=($!)
wait_http http://127.0.0.1:8081/healthz kiosk
wait_http http://127.0.0.1:8082/healthz gateway

cat <<MSG

Linli demo is running (Ctrl-C stops it):
  hub dashboard and API  http://127.0.0.1:8080/   (admin token: ./data/hub/admin.token)
  kiosk (building B1)    http://127.0.0.1:8081/
  gateway (building B3)  http://127.0.0.1:8082/api/v1/doors   (simulated doors, cards, smoke)
  MQTT (embedded)        tcp://127.0.0.1:1883

MSG
# Stop everything as soon as any of the three exits.
wait -n "${pids[@]}"
