#!/usr/bin/env bash
# keyward's main job on an embedded default, on a fresh Debian 12 machine:
# a SoftHSM token in a local directory (.demo/), a secret provisioned, the
# agent started, the secret fetched by a client through the agent's socket,
# the agent stopped. Installs what it needs; touches nothing outside .demo/.
#
#   scripts/demo.sh          root key in a SoftHSM token (PKCS#11)
#   scripts/demo.sh --tpm    data keys sealed by a software TPM (swtpm)
set -euo pipefail
backend=pkcs11
case "${1:-}" in
"") ;;
--tpm) backend=tpm ;;
*)
	echo "usage: $0 [--tpm]" >&2
	exit 2
	;;
esac
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps

demo=$PWD/.demo
rm -rf "$demo"
mkdir -p "$demo"
chmod 0700 "$demo"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "build keyward"
go build -o "$demo/keyward" ./cmd/keyward
keyward() { "$demo/keyward" "$@"; }

say "a throwaway SoftHSM token in $demo/softhsm (random PIN in a 0600 file)"
token_out=$(scripts/softhsm-token.sh "$demo/softhsm" keyward-demo)
eval "$(grep '^export ' <<<"$token_out")"
uri=$(grep '^pkcs11:' <<<"$token_out" | sed 's/object=keyward-root/object=keyward-kek/')
echo "$uri"

tpm_device=/dev/tpmrm0
swtpm_pid=
agent=
if [ "$backend" = tpm ]; then
	say "a software TPM (swtpm) with its state in $demo/swtpm"
	mkdir -p "$demo/swtpm"
	swtpm socket --tpmstate dir="$demo/swtpm" --tpm2 \
		--server type=unixio,path="$demo/swtpm/tpm.sock" \
		--ctrl type=unixio,path="$demo/swtpm/ctrl.sock" \
		--flags not-need-init,startup-clear >"$demo/swtpm.log" 2>&1 &
	swtpm_pid=$!
	for _ in $(seq 100); do
		[ -S "$demo/swtpm/tpm.sock" ] && break
		sleep 0.05
	done
	tpm_device=$demo/swtpm/tpm.sock
fi
stop_all() {
	if [ -n "$agent" ]; then kill "$agent" 2>/dev/null || true; fi
	if [ -n "$swtpm_pid" ]; then kill "$swtpm_pid" 2>/dev/null || true; fi
}
trap stop_all EXIT

# This machine's id, or a demo one where there is none.
machine_id=/etc/machine-id
if ! grep -qE '^[0-9a-f]{32}$' "$machine_id" 2>/dev/null; then
	machine_id=$demo/machine-id
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$machine_id"
fi

cat >"$demo/keyward.toml" <<CONF
backend = "$backend"
[tpm]
device = "$tpm_device"
pcrs = "sha256:7"
[store]
dir = "$demo/store"
machine_id_file = "$machine_id"
[pkcs11]
uri = "$uri"
[agent]
socket = "$demo/run/agent.sock"
socket_mode = "0600"
policy = "$demo/policy.toml"
audit_log = "$demo/audit.log"
CONF
export KEYWARD_CONFIG=$demo/keyward.toml

if [ "$backend" = tpm ]; then
	say "keyward init: the TPM's storage key, and the store (data keys will be sealed to PCR 7)"
else
	say "keyward init: create the key-encryption key inside the token, and the store"
fi
keyward init
keyward init
if [ "$backend" = tpm ]; then
	keyward pcrs || true
fi

say "keyward put: seal a secret read from stdin (never from argv)"
demo_secret="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$demo_secret" | keyward put binance/mm-prod
keyward list
keyward inspect binance/mm-prod

say "policy: this user ($(id -un), uid $(id -u)) may get binance/*"
cat >"$demo/policy.toml" <<POLICY
[[rule]]
name = "demo"
secrets = ["binance/*"]
users = ["$(id -u)"]
allow = ["get", "list"]
POLICY
chmod 0644 "$demo/policy.toml"
keyward policy check --uid "$(id -u)" binance/mm-prod

say "keyward serve: start the agent"
# Started directly, not through the shell function, so that $! is the agent.
"$demo/keyward" serve 2>"$demo/agent.log" </dev/null >/dev/null &
agent=$!
for _ in $(seq 100); do
	[ -S "$demo/run/agent.sock" ] && break
	sleep 0.05
done
export KEYWARD_SOCKET=$demo/run/agent.sock

say "keyward get: a client fetches the secret through the socket"
got=$(keyward get binance/mm-prod)
if [ "$got" != "$demo_secret" ]; then
	echo "demo failed: the agent returned another value" >&2
	exit 1
fi
echo "fetched binance/mm-prod: ${#got} bytes, matches what was put"

say "a secret the policy does not grant is refused"
if keyward get okx/other 2>&1; then
	echo "demo failed: an ungranted secret was served" >&2
	exit 1
fi

say "stop the agent (SIGTERM: drain, zero secrets, exit 0)"
kill -TERM "$agent"
wait "$agent"
agent=
echo "agent exited cleanly"
echo
echo "audit trail ($demo/audit.log):"
cat "$demo/audit.log"
if grep -qF "$demo_secret" "$demo/audit.log" "$demo/agent.log" "$demo"/store/*; then
	echo "demo failed: the secret appears in a log or the store" >&2
	exit 1
fi
say "demo complete: everything is in $demo"
