#!/usr/bin/env bash
# Syslog sink throughput to a local rsyslog over TCP and TLS (RFC 5424, octet counting):
# events/s as acknowledged by the sink, and until rsyslog has written all of them to its file.
#
#   benches/syslog.sh [EVENTS]     (default 200000; needs rsyslog, rsyslog-gnutls, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
cargo build --release --quiet --example syslog_throughput
BIN=target/release/examples/syslog_throughput
W=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$W"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout "$W/ca.key" -out "$W/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$W/key.pem" -out "$W/req.csr" 2>/dev/null
openssl x509 -req -in "$W/req.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 2 -out "$W/cert.pem" \
  -extfile <(printf "subjectAltName=IP:127.0.0.1,DNS:localhost") 2>/dev/null

run() { # name transport port
  local name=$1 port=$3 driver=""
  mkdir -p "$W/$name"
  if [ "$2" = tls ]; then
    driver="defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"$W/ca.pem\" defaultNetstreamDriverCertFile=\"$W/cert.pem\" defaultNetstreamDriverKeyFile=\"$W/key.pem\""
    mod='module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")'
  else
    mod='module(load="imtcp")'
  fi
  cat > "$W/$name/rsyslog.conf" <<CONF
global(workDirectory="$W/$name" maxMessageSize="64k" $driver)
$mod
input(type="imtcp" port="$port" address="127.0.0.1" ruleset="out")
template(name="t" type="string" string="%msg%\n")
ruleset(name="out") { action(type="omfile" file="$W/$name/out.log" template="t" asyncWriting="on" ioBufferSize="256k") }
CONF
  /usr/sbin/rsyslogd -n -f "$W/$name/rsyslog.conf" -i "$W/$name.pid" &
  PIDS+=($!)
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  local start end
  start=$(date +%s.%N)
  "$BIN" "$2" "127.0.0.1:$port" "$N" "$W/ca.pem"
  while [ "$(wc -l < "$W/$name/out.log" 2>/dev/null || echo 0)" -lt $((N + 1)) ]; do sleep 0.05; done
  end=$(date +%s.%N)
  awk -v n="$N" -v s="$start" -v e="$end" -v t="$2" 'BEGIN { printf "%s: all %d events in rsyslog'"'"'s file after %.3f s = %.0f events/s\n", t, n, e - s, n / (e - s) }'
}
run tcp tcp 16514
run tls tls 16515
