#!/usr/bin/env bash
# The demo behind `make run`: a hub, a kiosk and a gateway, each its own
# process, data under ./data/. Ctrl-C stops all three cleanly.
#
# The three run independently: stopping the hub leaves the kiosk and the
# gateway serving residents offline, which is the point of the demo.
#
#   configs/demo.sh            run the demo (make run)
#   configs/demo.sh hub-stop   stop only the hub (make hub-stop)
#   configs/demo.sh hub-start  start the hub again (make hub-start); its
#                              output goes to data/hub.log
#
# Each process's pid is kept in data/{hub,kiosk,gateway}.pid. Ports, the
# data dir and the binaries can be moved with LINLI_DEMO_HUB_HTTP,
# LINLI_DEMO_MQTT, LINLI_DEMO_KIOSK_HTTP, LINLI_DEMO_GATEWAY_HTTP,
# LINLI_DEMO_DATA and LINLI_DEMO_BIN (the tests run it on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LINLI_DEMO_BIN:-./bin}
data=${LINLI_DEMO_DATA:-./data}
hub_http=${LINLI_DEMO_HUB_HTTP:-127.0.0.1:8080}
mqtt=${LINLI_DEMO_MQTT:-127.0.0.1:1883}
kiosk_http=${LINLI_DEMO_KIOSK_HTTP:-127.0.0.1:8081}
gateway_http=${LINLI_DEMO_GATEWAY_HTTP:-127.0.0.1:8082}
hub_url=http://$hub_http

wait_http() { # url, name
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$2 did not come up at $1" >&2
	return 1
}

alive() { # name: the process of data/NAME.pid is running
	[ -f "$data/$1.pid" ] && kill -0 "$(cat "$data/$1.pid")" 2>/dev/null
}

start_hub() {
	"$bin/linli-hub" --config configs/hub.yaml --data "$data/hub" --http "$hub_http" --mqtt-listen "$mqtt" "$@" &
	echo $! >"$data/hub.pid"
}

stop_one() { # name: TERM, then wait until it has exited (it is not always our child)
	alive "$1" || return 0
	local pid
	pid=$(cat "$data/$1.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$data/$1.pid"
}

case "${1:-run}" in
hub-stop)
	if ! alive hub; then
		echo "the hub is not running"
		exit 0
	fi
	stop_one hub
	echo "hub stopped; the kiosk and the gateway keep working offline (make hub-start brings it back)"
	exit 0
	;;
hub-start)
	if alive hub; then
		echo "the hub is already running (pid $(cat "$data/hub.pid"))"
		exit 0
	fi
	mkdir -p "$data"
	start_hub >>"$data/hub.log" 2>&1
	wait_http "$hub_url/healthz" hub
	echo "hub started (log: $data/hub.log); the edges catch up on their own"
	exit 0
	;;
run) ;;
*)
	echo "usage: $0 [run|hub-stop|hub-start]" >&2
	exit 2
	;;
esac

stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping…"
	# By pid file, not as children: a hub restarted with hub-start is not
	# a child of this script but stops with the rest.
	for p in gateway kiosk hub; do
		stop_one "$p"
	done
	echo "stopped; data kept under $data/"
	exit 0
}
trap stop INT TERM EXIT

mkdir -p "$data"
start_hub
wait_http "$hub_url/healthz" hub
# Enroll the demo devices once: each gets its own key and broker
# credentials, and signs everything it sends.
enroll() { # id site role data
	if [ ! -f "$4/identity/identity.json" ]; then
		# --replace: a demo edge whose data dir was wiped enrolls anew under
		# its id (the hub keeps its old key for what it already numbered).
		token=$("$bin/linli-hub" device add --replace --hub "$hub_url" --data "$data/hub" --id "$1" --site "$2" --role "$3" | tail -n 1)
		"$bin/linli-edge" enroll --hub "$hub_url" --token "$token" --data "$4"
	fi
}
enroll kiosk-b1 xiangyang kiosk "$data/edge/kiosk-b1"
enroll gw-b3 xiangyang gateway "$data/edge/gw-b3"
# Building B3's access list, once: the simulator's residents' cards (the
# hub keeps only their keyed hashes; 26:99:1 stays a stranger).
if [ ! -f "$data/hub/.demo-access-list" ]; then
	curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $(cat "$data/hub/admin.token")" \
		--data @configs/access-list-demo.json "$hub_url/api/v1/access-lists/xiangyang/B3"
	touch "$data/hub/.demo-access-list"
fi
"$bin/linli-edge" --config configs/kiosk.yaml --data "$data/edge/kiosk-b1" --http "$kiosk_http" --broker "tcp://$mqtt" --public-url "$hub_url" &
echo $! >"$data/kiosk.pid"
"$bin/linli-edge" --config configs/gateway.yaml --data "$data/edge/gw-b3" --http "$gateway_http" --broker "tcp://$mqtt" &
echo $! >"$data/gateway.pid"
wait_http "http://$kiosk_http/healthz" kiosk
wait_http "http://$gateway_http/healthz" gateway

cat <<MSG

Linli demo is running (Ctrl-C stops it):
  hub dashboard and API  $hub_url/   (admin token: $data/hub/admin.token)
  kiosk (building B1)    http://$kiosk_http/
  gateway (building B3)  http://$gateway_http/api/v1/doors   (simulated doors, cards, smoke)
  MQTT (embedded)        tcp://$mqtt

Offline: \`make hub-stop\` in another terminal stops only the hub; the kiosk
and the gateway keep working. \`make hub-start\` brings it back and they
catch up.

MSG
# Run until Ctrl-C, or until none of the three is left: any one of them
# may stop (the hub, on purpose) without taking the others down.
while alive hub || alive kiosk || alive gateway; do
	sleep 1 &
	wait $! || true
done
echo "all three processes have exited"
