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

. benches/sim.sh
start_simulator "$WORK" "$N" 30d
write_config "$WORK/config.toml" "$WORK/state"

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
measure "floor (typed from_slice)" "$FLOOR" "$SIM_URL" typed
RUNS=1 measure "floor (Value from_slice)" "$FLOOR" "$SIM_URL" value
FRESH=1 measure "once, every event new" "$BIN" once -c "$WORK/config.toml"
grep -o 'new=[0-9]*' "$WORK/err" | head -1
measure "once, every event known" "$BIN" once -c "$WORK/config.toml"
grep -o 'known=[0-9]*' "$WORK/err" | head -1
