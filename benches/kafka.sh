#!/usr/bin/env bash
# Kafka sink benchmarks against a local tansu broker (memory storage):
#  1. events/s produced with acks=all (the sink's defaults), batches of 1000;
#  2. end-to-end time of a `once` first poll whose listing has EVENTS sessions, all new.
#
#   benches/kafka.sh [EVENTS]     (default 100000; tests/run-all.sh installs tansu)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
TANSU=${TANSU_BIN:-$HOME/.cache/senhasegura-forwarder/tansu-0.6.0/bin/tansu}
cargo build --release --quiet --bin senhasegura-forwarder --example kafka_throughput
BIN=target/release/senhasegura-forwarder
W=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$W"' EXIT
PORT=19092
"$TANSU" broker --storage-engine memory://tansu/ --listener-url tcp://127.0.0.1:$PORT \
  --advertised-listener-url tcp://127.0.0.1:$PORT > "$W/tansu.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
"$TANSU" topic create bench --broker tcp://127.0.0.1:$PORT --partitions 3 > /dev/null
"$TANSU" topic create e2e --broker tcp://127.0.0.1:$PORT --partitions 3 > /dev/null

target/release/examples/kafka_throughput 127.0.0.1:$PORT bench 200000

. benches/sim.sh
start_simulator "$W" "$N" 7d
PIDS+=("$SIM_PID")
write_config "$W/config.toml" "$W/state" "[[sink]]
type = \"kafka\"
brokers = \"127.0.0.1:$PORT\"
topic = \"e2e\""
/usr/bin/time -f "%e %M" -o "$W/time" "$BIN" once -c "$W/config.toml" 2> "$W/err"
read -r secs kb < "$W/time"
grep -o 'delivered=[0-9]*' "$W/err"
printf 'once, first poll of %d sessions to kafka: wall %.2f s, peak RSS %.1f MiB\n' "$N" "$secs" "$(awk -v k="$kb" 'BEGIN{print k/1024}')"
