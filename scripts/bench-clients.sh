#!/usr/bin/env bash
# bench-clients.sh [N]: latency of the Python and Node.js clients (get and
# sign over one connection, beside an in-process HMAC in the same run) and
# what attaching ccxt to the agent adds to a createOrder, against the real
# keyward binary on a throwaway SoftHSM token in a temporary directory.
# Prints one JSON object per language; docs/performance.md has the numbers.
# Not run by scripts/test.sh (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
n=${1:-20000}

work=$(mktemp -d)
agent=
cleanup() {
	if [ -n "$agent" ]; then kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
chmod 0700 "$work"

go build -o "$work/keyward" ./cmd/keyward
token_out=$(scripts/softhsm-token.sh "$work/softhsm" keyward-bench)
eval "$(grep '^export ' <<<"$token_out")"
uri=$(grep '^pkcs11:' <<<"$token_out" | sed 's/object=keyward-root/object=keyward-kek/')
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$work/machine-id"
cat >"$work/keyward.toml" <<CONF
backend = "pkcs11"
[store]
dir = "$work/store"
machine_id_file = "$work/machine-id"
[pkcs11]
uri = "$uri"
[agent]
socket = "$work/run/agent.sock"
socket_mode = "0600"
policy = "$work/policy.toml"
audit_log = "$work/audit.log"
CONF
export KEYWARD_CONFIG=$work/keyward.toml
"$work/keyward" init >/dev/null 2>&1
head -c 48 /dev/urandom | base64 | "$work/keyward" put bench/secret >/dev/null
printf '%s' "$(head -c 48 /dev/urandom | base64 | tr -d '+/=')" |
	"$work/keyward" put --exchange binance --api-key benchKey0123456789 bench/binance >/dev/null
cat >"$work/policy.toml" <<POLICY
[[rule]]
name = "bench"
secrets = ["bench/secret"]
users = ["$(id -u)"]
allow = ["get"]

[[rule]]
name = "bench-sign"
secrets = ["bench/binance"]
users = ["$(id -u)"]
allow = ["sign"]
requests = ["POST /api/v3/order"]
POLICY
"$work/keyward" serve 2>"$work/agent.log" </dev/null >/dev/null &
agent=$!
for _ in $(seq 200); do
	[ -S "$work/run/agent.sock" ] && break
	sleep 0.05
done
export KEYWARD_SOCKET=$work/run/agent.sock

PYTHONPATH=python python3 python/bench/bench.py bench/secret bench/binance "$n"
node js/bench/bench.js bench/secret bench/binance "$n"
