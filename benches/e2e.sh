#!/usr/bin/env bash
# End-to-end benchmark: a `once` cycle against an N-session listing served by the simulator on
# loopback, with every event new and then with every event known, compared with the floor
# (download + serde_json parse, nothing else). Prints wall time and peak RSS of each.
#
#   benches/e2e.sh [SESSIONS]      (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release --quiet --bin senhasegura-forwarder --example floor
BIN=target/release/senhasegura-forwarder
FLOOR=target/release/examples/floor
WORK=$(mktemp -d)
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" simulate --listen 127.0.0.1:0 --sessions "$N" --active $((N / 100)) --history 30d \
  --now "2026-01-15 12:00:00" > "$WORK/sim.out" 2>/dev/null &
SIM_PID=$!
for _ in $(seq 100); do [ -s "$WORK/sim.out" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/sim.out")

cat > "$WORK/config.toml" <<TOML
[source]
url = "$URL"
path = "/api/session/remotesessions"
timezone = "UTC"
backfill = "all"
[source.auth]
client_id = "forwarder"
client_secret = "simulator-secret"
[state]
path = "$WORK/state"
retention = "100000d"
TOML

RUNS=${RUNS:-3}
measure() { # label, command... ; runs it RUNS times, prints each and the median
  local label=$1; shift
  local walls=() rss=()
  for _ in $(seq "$RUNS"); do
    [ -n "${FRESH:-}" ] && rm -rf "$WORK/state"
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > /dev/null 2> "$WORK/err" || { cat "$WORK/err"; exit 1; }
    read -r secs kb < "$WORK/time"
    walls+=("$secs"); rss+=("$kb")
  done
  printf '%-28s wall %s s (median %s)   peak RSS %s MiB (max)\n' "$label" "${walls[*]}" \
    "$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')" \
    "$(printf '%s\n' "${rss[@]}" | sort -n | tail -1 | awk '{printf "%.1f", $1/1024}')"
}

echo "listing: $N sessions ($((N / 100)) running), simulator on loopback, $RUNS runs each"
measure "floor (typed from_slice)" "$FLOOR" "$URL" typed
RUNS=1 measure "floor (Value from_slice)" "$FLOOR" "$URL" value
FRESH=1 measure "once, every event new" "$BIN" once -c "$WORK/config.toml"
grep -o 'new=[0-9]*' "$WORK/err" | head -1
measure "once, every event known" "$BIN" once -c "$WORK/config.toml"
grep -o 'known=[0-9]*' "$WORK/err" | head -1
