#!/usr/bin/env bash
# Profile one `once` of a simulated listing with perf, as in docs/perf/: the samples grouped by
# pipeline stage (benches/perf_stages.py) and, when inferno is installed
# (`cargo install inferno`), a flame graph.
#
#   benches/profile.sh [--sessions N] [--history H] [--bin PATH] new|known OUT_DIR
#     new: every event new (empty state); known: a second run over the same listing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000000; H=30d; BIN=
while [ $# -gt 2 ]; do
  case $1 in
    --sessions) N=$2; shift 2 ;;
    --history) H=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { echo "usage: $0 [--sessions N] [--history H] [--bin PATH] new|known OUT_DIR" >&2; exit 2; }
PHASE=$1; OUT=$2
case $PHASE in new|known) ;; *) echo "phase must be new or known" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
if [ -z "$BIN" ]; then
  cargo build --release --quiet --bin senhasegura-forwarder
  BIN=target/release/senhasegura-forwarder
fi
mkdir -p "$OUT"
WORK=$(mktemp -d); SIM_PID=
trap '[ -n "$SIM_PID" ] && kill $SIM_PID 2>/dev/null; rm -rf "$WORK"' EXIT
. benches/sim.sh
start_simulator "$WORK" "$N" "$H"
write_config "$WORK/config.toml" "$WORK/state"
[ "$PHASE" = known ] && "$BIN" once -c "$WORK/config.toml" > /dev/null 2>&1
perf record -F 999 -g --call-graph dwarf,16384 -o "$OUT/perf-$PHASE.data" \
  "$BIN" once -c "$WORK/config.toml" > /dev/null 2> "$WORK/err"
python3 benches/perf_stages.py "$OUT/perf-$PHASE.data" | tee "$OUT/stages-$PHASE.txt"
if command -v inferno-collapse-perf >/dev/null; then
  perf script -i "$OUT/perf-$PHASE.data" 2>/dev/null | inferno-collapse-perf \
    | inferno-flamegraph --title "once, $N sessions ($H), all $PHASE" --width 1600 --minwidth 3 \
    > "$OUT/all-$PHASE.svg"
  echo "flame graph: $OUT/all-$PHASE.svg"
fi
