#!/usr/bin/env bash
# Peak memory of `once` against hostile vault answers (issue: hostile and broken responses).
# Each must stay bounded (target: under 64 MiB) however large the attack.
#
#   benches/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin senhasegura-forwarder
BIN=target/release/senhasegura-forwarder
WORK=$(mktemp -d)
SIM_PID=
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
. benches/sim.sh

# attack LABEL SIMULATOR-FLAGS...: serve the attack, run `once`, print exit code, wall, RSS.
attack() {
  local label=$1; shift
  "$BIN" simulate --listen 127.0.0.1:0 --now "2026-01-15 12:00:00" "$@" > "$WORK/sim.out" 2>/dev/null &
  SIM_PID=$!
  for _ in $(seq 600); do [ -s "$WORK/sim.out" ] && break; sleep 0.1; done
  SIM_URL=$(head -1 "$WORK/sim.out")
  rm -rf "$WORK/state"
  write_config "$WORK/config.toml" "$WORK/state" ""
  sed -i 's/^timezone = "UTC"/timezone = "UTC"\nretries = 0/' "$WORK/config.toml"
  local code=0
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$BIN" once -c "$WORK/config.toml" > /dev/null 2> "$WORK/err" || code=$?
  # time(1) writes "Command exited with non-zero status N" first when the exit is not 0.
  read -r secs kb < <(tail -1 "$WORK/time")
  printf '%-44s exit %s  wall %6s s  peak RSS %6.1f MiB  %s\n' "$label" "$code" "$secs" \
    "$(awk -v k="$kb" 'BEGIN{print k/1024}')" \
    "$(grep -o 'error=.*' "$WORK/err" | head -1 | cut -c1-90)"
  kill $SIM_PID 2>/dev/null || true; wait $SIM_PID 2>/dev/null || true
}

attack "nesting bomb: 100M '[' gzipped" --bomb nesting --bomb-bytes 100000000 --gzip
attack "string bomb: 1 GiB string gzipped" --bomb string --bomb-bytes 1073741824 --gzip
attack "token body: 200 MB" --token-pad 200000000
attack "token body: 200 MB gzipped" --token-pad 200000000 --gzip
