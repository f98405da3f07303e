#!/usr/bin/env bash
# Makes store-v1.tar.gz: the data dir of a hub built from REV (default: the
# last commit before stores had a version) after a kiosk synced a few
# check-ins and a report, an operator was created and the report moved on.
# TestOpensAStoreAnOlderHubWrote opens it with today's code.
#
#   hub/server/testdata/make-fixture.sh [REV]
set -euo pipefail
rev=${1:-567dc6625be6c50b777414a437b4ada13037b98d}
here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

git -C "$root" archive "$rev" | tar -x -C "$work" --one-top-level=src
(cd "$work/src" && go build -o "$work/bin/" ./hub/cmd/linli-hub ./edge/cmd/linli-edge)

data=$work/hub
"$work/bin/linli-hub" --data "$data" --http 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --profile small >"$work/hub.out" 2>"$work/hub.log" &
pids+=($!)
hubpid=$!
for _ in $(seq 100); do grep -q serving "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
hub=$(sed -n 's/^linli-hub serving \(http[^ ]*\) (mqtt \([^)]*\)).*/\1/p' "$work/hub.out")
mqtt=$(sed -n 's/^linli-hub serving \(http[^ ]*\) (mqtt \([^)]*\)).*/\2/p' "$work/hub.out")
token=$(cat "$data/admin.token")

"$work/bin/linli-edge" --id kiosk-1 --site s1 --role kiosk --data "$work/kiosk" --http 127.0.0.1:0 \
	--broker "$mqtt" --profile small >"$work/kiosk.out" 2>"$work/kiosk.log" &
pids+=($!)
for _ in $(seq 100); do grep -q serving "$work/kiosk.out" 2>/dev/null && break; sleep 0.1; done
kiosk=$(sed -n 's/.*serving \(http[^ ]*\).*/\1/p' "$work/kiosk.out")

post() { curl -sf -XPOST "$@" -H 'Content-Type: application/json'; echo; }
for r in R1 R2 R3 R4 R5; do post "$kiosk/api/v1/checkins" -d "{\"resident\":\"$r\",\"activity\":\"A7\"}"; done
post "$kiosk/api/v1/reports" -d '{"category":"fire_safety","title":"fixture report","building":"B1","unit":"1-402","resident":"R1"}'
for _ in $(seq 200); do
	curl -sf "$kiosk/api/v1/sync" | grep -q '"pending":0' && break
	sleep 0.1
done
post "$hub/api/v1/operators" -H "Authorization: Bearer $token" -d '{"name":"op1","password":"fixture-password-1","role":"operator"}'
curl -sf -XPATCH "$hub/api/v1/reports/kiosk-1.6" -H "Authorization: Bearer $token" -d '{"status":"accepted","note":"fixture note"}'
echo
kill -TERM "$hubpid"
wait "$hubpid" || true
tar -C "$data" --sort=name --owner=0 --group=0 --numeric-owner --mtime=2026-12-06 -czf "$here/store-v1.tar.gz" .
ls -l "$here/store-v1.tar.gz"
