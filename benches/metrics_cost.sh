#!/usr/bin/env bash
# The cost of the metrics endpoint on the e2e benchmark (benches/e2e.sh): `once` over an
# N-session listing, every event new and then every event known, with `[metrics]` off and on
# (on: the endpoint is scraped every second during the run, as Prometheus would), alternating
# off/on so that a noisy machine hits both alike. Prints each run (wall, user+sys CPU, peak
# RSS) and the medians; on a shared machine CPU time is the steadier figure.
#
#   benches/metrics_cost.sh [SESSIONS] [RUNS]      (default 1000000 3)
#   BASE_BIN=/path/to/older/binary benches/metrics_cost.sh ...   also runs that binary ("base",
#   metrics off), e.g. a build from before the metrics existed.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-3}
cargo build --release --quiet --bin senhasegura-forwarder
BIN=target/release/senhasegura-forwarder
WORK=$(mktemp -d)
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

. benches/sim.sh
start_simulator "$WORK" "$N" 30d
PORT=$((20000 + RANDOM % 20000))
write_config "$WORK/off.toml" "$WORK/state"
write_config "$WORK/on.toml" "$WORK/state" "[metrics]
listen = \"127.0.0.1:$PORT\""

MODES="off on"
[ -n "${BASE_BIN:-}" ] && MODES="base off on" && cp "$WORK/off.toml" "$WORK/base.toml"

one() { # mode (base|off|on), fresh (1|0): prints "wall_s rss_kib cpu_s"
  [ "$2" = 1 ] && rm -rf "$WORK/state"
  local bin=$BIN
  [ "$1" = base ] && bin=$BASE_BIN
  local scraper=
  if [ "$1" = on ]; then
    ( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics" || true; done ) &
    scraper=$!
  fi
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$bin" once -c "$WORK/$1.toml" > /dev/null 2> "$WORK/err" \
    || { cat "$WORK/err"; exit 1; }
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null && wait "$scraper" 2>/dev/null || true
  if [ "$1" = on ] && ! grep -q "Serving metrics" "$WORK/err"; then echo "metrics endpoint not started" >&2; exit 1; fi
  awk '{printf "%s %s %.2f\n", $1, $2, $3 + $4}' "$WORK/time"
}

median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

echo "listing: $N sessions, $RUNS runs per cell, modes alternating: $MODES"
for phase in new known; do
  fresh=0; [ "$phase" = new ] && fresh=1
  [ "$phase" = known ] && one off 1 > /dev/null # fill the store once
  for mode in $MODES; do : > "$WORK/$mode.$phase"; done
  for r in $(seq "$RUNS"); do
    for mode in $MODES; do
      read -r secs kb cpu < <(one "$mode" "$fresh")
      echo "$secs $kb $cpu" >> "$WORK/$mode.$phase"
      printf '%-6s %-5s run %d: wall %6.2f s  cpu %6.2f s  peak RSS %6.1f MiB\n' "$phase" "$mode" "$r" "$secs" "$cpu" "$(echo "$kb/1024" | bc -l)"
    done
  done
  for mode in $MODES; do
    printf '%-6s %-5s median wall %6.2f s  median cpu %6.2f s  median peak RSS %6.1f MiB  (walls: %s)\n' "$phase" "$mode" \
      "$(cut -d' ' -f1 "$WORK/$mode.$phase" | median)" \
      "$(cut -d' ' -f3 "$WORK/$mode.$phase" | median)" \
      "$(cut -d' ' -f2 "$WORK/$mode.$phase" | median | awk '{print $1/1024}')" \
      "$(cut -d' ' -f1 "$WORK/$mode.$phase" | tr '\n' ' ')"
  done
done
