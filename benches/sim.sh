# Shared by the bench scripts (sourced): start the simulator with N sessions on a free
# loopback port and write an agent config for it. Needs BIN and a work dir.

# start_simulator DIR N HISTORY [SIMULATOR_ARGS...]: sets SIM_PID and SIM_URL.
start_simulator() {
  "$BIN" simulate --listen 127.0.0.1:0 --sessions "$2" --active $(($2 / 100)) --history "$3" \
    --now "2026-01-15 12:00:00" "${@:4}" > "$1/sim.out" 2>/dev/null &
  SIM_PID=$!
  for _ in $(seq 100); do [ -s "$1/sim.out" ] && break; sleep 0.1; done
  SIM_URL=$(head -1 "$1/sim.out")
}

# write_config FILE STATE_DIR [EXTRA_TOML]: every event new on a first run (backfill all).
write_config() {
  cat > "$1" <<TOML
[source]
url = "$SIM_URL"
path = "/api/session/remotesessions"
timezone = "UTC"
backfill = "all"
[source.auth]
client_id = "forwarder"
client_secret = "simulator-secret"
[state]
path = "$2"
retention = "36500d"
${3:-}
TOML
}
