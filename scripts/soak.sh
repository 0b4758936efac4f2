#!/usr/bin/env bash
# soak.sh [--duration D] [--conns N] [--shim]
#
# A soak of the agent through HSM faults. It builds keyward, makes a
# throwaway SoftHSM token, a store with one secret and a policy in a temp
# directory, starts `keyward serve` there as a real process, and runs
# scripts/soak: N connections getting the secret in a loop while it is
# rotated every 2 s, SIGHUPs, and at mid-run the HSM goes away for ~10 s
# (the token directory is moved away; with --shim, a fault-injecting
# PKCS #11 module in front of SoftHSM answers "device removed", then hangs
# every call for 2 s, then answers "device error"). It prints a table of
# checks and numbers and exits non-zero if any check fails.
#
# Defaults: 64 connections for 10 minutes. scripts/test.sh runs it short.
# Nothing outside the temp directory is touched; it is removed on exit
# (kept, for a post-mortem, when KEYWARD_SOAK_KEEP is set).
# Secret values are never on a command line nor in a file other than the
# store's envelopes; the token's PIN is in a 0600 file, as in
# scripts/softhsm-token.sh.
set -euo pipefail

duration=10m
conns=64
shim=0
usage() {
	echo "usage: $0 [--duration D] [--conns N] [--shim]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--duration)
		[ $# -ge 2 ] || usage
		duration=$2
		shift 2
		;;
	--conns)
		[ $# -ge 2 ] || usage
		conns=$2
		shift 2
		;;
	--shim)
		shim=1
		shift
		;;
	*) usage ;;
	esac
done

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keyward-soak.XXXXXX")
chmod 0700 "$tmp"
agent=
cleanup() {
	if [ -n "$agent" ] && kill -0 "$agent" 2>/dev/null; then
		kill -TERM "$agent" 2>/dev/null || true
		wait "$agent" 2>/dev/null || true
	fi
	if [ -n "${KEYWARD_SOAK_KEEP:-}" ]; then
		echo "soak: kept $tmp (KEYWARD_SOAK_KEEP is set)" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

say() { printf '== [%3ds] %s\n' "$SECONDS" "$*"; }

say "build keyward and the soak client"
mkdir "$tmp/bin"
go build -o "$tmp/bin/" ./cmd/keyward ./scripts/soak
keyward() { "$tmp/bin/keyward" "$@"; }

say "a throwaway SoftHSM token in $tmp/softhsm"
token_out=$(scripts/softhsm-token.sh "$tmp/softhsm" keyward-soak)
eval "$(grep '^export ' <<<"$token_out")"
uri=$(grep '^pkcs11:' <<<"$token_out" | sed 's/object=keyward-root/object=keyward-kek/')
softhsm_module=$(sed -n 's/.*module-path=\([^&]*\).*/\1/p' <<<"$uri")

fault_flags=(-token-dir "$tmp/softhsm/tokens")
if [ "$shim" = 1 ]; then
	say "the fault-injecting PKCS #11 module (internal/testenv/testdata/p11fault.c) in front of SoftHSM"
	headers=$(go list -m -f '{{.Dir}}' github.com/miekg/pkcs11)
	mkdir -m 0755 "$tmp/p11fault"
	gcc -shared -fPIC -O2 -Wall -Wextra -Werror -fvisibility=hidden \
		-I"$headers" "-DP11FAULT_TARGET=\"$softhsm_module\"" \
		-o "$tmp/p11fault/libp11fault.so" internal/testenv/testdata/p11fault.c -ldl -lpthread
	printf 'pass\n' >"$tmp/p11fault/control"
	export P11FAULT_CONTROL=$tmp/p11fault/control
	uri=${uri/module-path=$softhsm_module/module-path=$tmp/p11fault/libp11fault.so}
	fault_flags=(-shim-control "$P11FAULT_CONTROL")
fi

machine_id=/etc/machine-id
if ! grep -qE '^[0-9a-f]{32}$' "$machine_id" 2>/dev/null; then
	machine_id=$tmp/machine-id
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$machine_id"
fi

cat >"$tmp/keyward.toml" <<CONF
backend = "pkcs11"
[store]
dir = "$tmp/store"
machine_id_file = "$machine_id"
[pkcs11]
uri = "$uri"
[agent]
socket = "$tmp/run/agent.sock"
socket_mode = "0600"
policy = "$tmp/policy.toml"
audit_log = "$tmp/audit.log"
CONF
chmod 0644 "$tmp/keyward.toml"
export KEYWARD_CONFIG=$tmp/keyward.toml
export KEYWARD_SOCKET=$tmp/run/agent.sock

uid=$(id -u)
cat >"$tmp/policy.toml" <<POLICY
# The soak client, as a trading process: get, nothing else.
[[rule]]
name = "trader"
secrets = ["soak/*"]
users = ["$uid"]
allow = ["get"]

# The same uid rotates through the agent and reads the agent's health.
[[rule]]
name = "rotator"
secrets = ["soak/*"]
users = ["$uid"]
allow = ["admin", "list"]
POLICY
chmod 0644 "$tmp/policy.toml"

say "keyward init, and version 1 of soak/key"
# Their output (SoftHSM warnings, hints) only when they fail.
keyward init >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; exit 1; }
printf 'soak-value-1' | keyward put soak/key >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; exit 1; }

say "keyward serve"
"$tmp/bin/keyward" serve 2>"$tmp/agent.log" </dev/null >/dev/null &
agent=$!
for _ in $(seq 200); do
	[ -S "$KEYWARD_SOCKET" ] && break
	kill -0 "$agent" 2>/dev/null || break
	sleep 0.05
done
if [ ! -S "$KEYWARD_SOCKET" ]; then
	echo "soak: the agent did not start; its log:" >&2
	cat "$tmp/agent.log" >&2
	exit 1
fi

say "soak: $conns connections for $duration$([ "$shim" = 1 ] && echo ', faults through the PKCS #11 shim')"
soak_rc=0
"$tmp/bin/soak" -duration "$duration" -conns "$conns" -name soak/key \
	-socket "$KEYWARD_SOCKET" -keyward "$tmp/bin/keyward" -agent-pid "$agent" \
	-store "$tmp/store" -audit "$tmp/audit.log" -agent-log "$tmp/agent.log" \
	"${fault_flags[@]}" || soak_rc=$?

# The soak client stopped the agent with SIGTERM: it must have exited 0.
agent_rc=0
wait "$agent" || agent_rc=$?
agent=
if [ "$agent_rc" != 0 ]; then
	echo "soak: FAIL: the agent exited with status $agent_rc after SIGTERM (want 0)" >&2
fi
if [ "$soak_rc" != 0 ] || [ "$agent_rc" != 0 ]; then
	echo "soak: the agent's warnings and errors (first 60):" >&2
	grep -E '"level":"(WARN|ERROR)"' "$tmp/agent.log" | head -60 >&2 || true
	exit 1
fi
echo "soak: agent exited 0 after SIGTERM"
echo "soak: PASS (${SECONDS}s)"
