#!/usr/bin/env bash
# The shipped units under a real systemd: boots systemd as PID 1 in
# systemd-nspawn on a throwaway overlay of this host's root file system and
# walks the operator's path of docs/operations.md inside it:
#
#   keyward install (twice: the second changes nothing); a SoftHSM token
#   made as the keyward user; the HSM PIN in an encrypted credential
#   (systemd-creds); keyward init as the keyward user with the PIN piped
#   from systemd-creds (no D-Bus needed); keyward.socket started; an SRE
#   with the admin permission puts and rotates secrets through the agent,
#   with no PIN, and one without it is refused; a trading user in
#   keyward-clients gets a secret through socket activation; systemctl
#   reload applies a policy change; a user outside the group is refused at
#   connect; the audit trail under journalctl -t keyward-audit and through
#   keyward audit; the PIN from pkcs11.pin_file when there is no
#   credential; the token going away and
#   coming back: served from memory, no restart, recovered by itself;
#   systemctl stop exits cleanly and the socket activates the agent again;
#   replacement hardware: another host's store (made before the boot, on
#   this machine, with a fleet recovery kit whose shares are encrypted to
#   custodians' age keys) restored onto the container, which has its own
#   machine id, and a new token, by custodians re-encrypting their shares
#   to the restore key; then served to the trading user (docs/recovery.md);
#   uninstall.
#
# Usage: scripts/nspawn-test.sh [KEYWARD_BINARY]
#
# Needs root and systemd-nspawn (apt-get install systemd-container); builds
# keyward with go build unless given a binary. Exits with the scenario's
# status (0: passed), 77 when this machine cannot run it. Every mount is
# undone on exit, whatever happens.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/nspawn-lib.sh
. "$here/scripts/nspawn-lib.sh"
nspawn_prepare nspawn-test

bin=${1:-}
if [ -z "$bin" ]; then
	echo "nspawn-test: building keyward"
	(cd "$here" && go build -buildvcs=false -o "$work/keyward" ./cmd/keyward)
	bin=$work/keyward
fi
install -D -m 0755 "$bin" "$root/usr/local/bin/keyward"
# The old host, whose store the container restores: a fleet recovery kit
# made on "the workstation" for three custodians' age keys, a SoftHSM
# token of its own, another machine id, two secrets.
prep_start=$SECONDS
old=$work/oldhost
mkdir -m 0700 "$old" "$old/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$old" >"$old/softhsm2.conf"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$old/machine-id"
install -m 0600 /dev/null "$old/pin"
printf '%010d\n' "$(od -An -N4 -tu4 /dev/urandom)" >"$old/pin"
SOFTHSM2_CONF=$old/softhsm2.conf softhsm2-util --init-token --free --label old --pin "$(cat "$old/pin")" \
	--so-pin "$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")" >/dev/null
for c in alice bob carol; do
	age-keygen -o "$old/$c.key" 2>/dev/null
	age-keygen -y "$old/$c.key" >"$old/$c.pub"
done
"$bin" recovery init --fleet --threshold 2 --out "$old/ws" \
	--custodian "$old/alice.pub" --custodian "$old/bob.pub" --custodian "$old/carol.pub"
printf '%s\n' '[store]' "dir = \"$old/store\"" "machine_id_file = \"$old/machine-id\"" \
	'[pkcs11]' 'uri = "pkcs11:token=old;object=keyward-kek?module-path=/usr/lib/softhsm/libsofthsm2.so"' \
	"pin_file = \"$old/pin\"" 'pin_credential = "none"' '[agent]' "socket = \"$old/agent.sock\"" \
	'[recovery]' "fleet_kit = \"$old/ws/fleet.kit\"" >"$old/keyward.toml"
SOFTHSM2_CONF=$old/softhsm2.conf "$bin" --config "$old/keyward.toml" init >/dev/null
printf %s fleet-horse | SOFTHSM2_CONF=$old/softhsm2.conf "$bin" --config "$old/keyward.toml" put binance/fleet
printf %s fleet-okx | SOFTHSM2_CONF=$old/softhsm2.conf "$bin" --config "$old/keyward.toml" put okx/fleet
mkdir "$root/opt/keyward-test/oldhost"
tar -C "$old/store" -cf "$root/opt/keyward-test/oldhost/store.tar" .
cp "$old/ws/fleet.kit" "$old/ws/share-1-alice.age" "$old/ws/share-3-carol.age" "$old/alice.key" "$old/carol.key" \
	"$root/opt/keyward-test/oldhost/"
echo "nspawn-test: the old host's store made in $((SECONDS - prep_start))s"

cat >"$root/opt/keyward-test/scenario.sh" <<'SCENARIO'
#!/bin/bash
set -euo pipefail
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
. /opt/keyward-test/lib.sh

step "keyward install"
keyward install
keyward install | tee /tmp/second-install
grep -q 'nothing changed' /tmp/second-install || fail "a second install changed something"
id keyward
getent group keyward-clients
[ "$(stat -c '%a %U:%G' /etc/keyward/keyward.toml)" = "644 root:root" ] || fail "keyward.toml: $(stat -c '%a %U:%G' /etc/keyward/keyward.toml)"
[ "$(stat -c '%a %U:%G' /etc/keyward/policy.toml)" = "644 root:root" ] || fail "policy.toml: $(stat -c '%a %U:%G' /etc/keyward/policy.toml)"
[ "$(stat -c '%a %U' /var/lib/keyward)" = "700 keyward" ] || fail "/var/lib/keyward: $(stat -c '%a %U' /var/lib/keyward)"
systemctl cat keyward.service >/dev/null

step "a trading user and an SRE in keyward-clients, and one outside it"
# The container is an overlay of the host: users of the host's with these
# names are replaced, in the container only, so that the run does not
# depend on which users the host has.
for u in trader sre outsider; do
	if id "$u" >/dev/null 2>&1; then userdel "$u"; fi
	if getent group "$u" >/dev/null; then groupdel "$u"; fi
done
useradd --no-create-home --shell /bin/sh --groups keyward-clients trader
useradd --no-create-home --shell /bin/sh --groups keyward-clients sre
useradd --no-create-home --shell /bin/sh outsider

step "SoftHSM token, made as the keyward user"
pin=$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")
so=$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")
as keyward softhsm2-util --init-token --free --label keyward --pin "$pin" --so-pin "$so" >/dev/null
unset so

step "the HSM PIN as an encrypted credential"
install -d -m 0700 /etc/credstore.encrypted
printf '%s' "$pin" | systemd-creds encrypt --name=keyward-pin - /etc/credstore.encrypted/keyward-pin

step "keyward init as the keyward user, the PIN piped from the credential (docs/operations.md)"
systemd-creds decrypt --name=keyward-pin /etc/credstore.encrypted/keyward-pin - |
	as keyward keyward --pin-stdin init 2>&1 | tee /tmp/init.out
grep -q 'SoftHSM token' /tmp/init.out || fail "init did not warn about the SoftHSM token directory"

step "policy: trader may read binance/*, sre administers binance/* and okx/*"
cat >/etc/keyward/policy.toml <<'EOF'
[[rule]]
name = "trader-binance"
secrets = ["binance/*"]
users = ["trader"]
allow = ["get"]

[[rule]]
name = "sre-admin"
secrets = ["binance/*", "okx/*"]
users = ["sre"]
allow = ["admin", "list"]
EOF
keyward policy check --uid "$(id -u trader)" binance/mm-prod
keyward policy check --op admin --uid "$(id -u sre)" binance/mm-prod

step "keyward.socket"
systemctl start keyward.socket
[ "$(stat -c '%a %U:%G' /run/keyward/agent.sock)" = "660 root:keyward-clients" ] ||
	fail "socket: $(stat -c '%a %U:%G' /run/keyward/agent.sock)"
! systemctl -q is-active keyward.service || fail "keyward.service runs before any connection"

step "the SRE puts secrets through the agent: no PIN, no shell as keyward, the token opened only by the agent"
printf %s correct-horse | as sre keyward put binance/mm-prod
printf %s other-value | as sre keyward put okx/exec
systemctl -q is-active keyward.service || fail "keyward.service did not start on the SRE's connection"
as keyward keyward list
out=$(printf %s stolen | as trader keyward put binance/evil 2>&1) && fail "trader, without admin, put a secret"
echo "$out" | has 'no admin permission' || fail "trader's put: $out"
notmine=$(find /var/lib/keyward /var/lib/softhsm/tokens -mindepth 1 ! -user keyward)
[ -z "$notmine" ] || fail "files the agent cannot read: $notmine"

step "the trading user gets a secret through socket activation"
got=$(as trader keyward get binance/mm-prod)
[ "$got" = correct-horse ] || fail "trader got '$got'"
systemctl -q is-active keyward.service || fail "keyward.service is not active"
pid=$(systemctl show -P MainPID keyward.service)
[ "$(ps -o user= -p "$pid")" = keyward ] || fail "the agent runs as $(ps -o user= -p "$pid")"
grep -q '^CapEff:.*0000000000080000$' "/proc/$pid/status" || fail "capabilities: $(grep CapEff "/proc/$pid/status")"
systemctl show -p StatusText -p WatchdogUSec -p NRestarts keyward.service
systemctl show -P StatusText keyward.service | has 'secrets.*backend healthy' || fail "STATUS= not as expected"
keyward status
out=$(as trader keyward get okx/exec 2>&1) && fail "trader got okx/exec before the policy allows it"
echo "$out" | has 'access denied' || fail "okx/exec: $out"

step "systemctl reload applies a policy change, without a restart"
cat >>/etc/keyward/policy.toml <<'EOF'

[[rule]]
name = "trader-okx"
secrets = ["okx/*"]
users = ["trader"]
allow = ["get"]
EOF
systemctl reload keyward.service
got=
for _ in $(seq 50); do
	if got=$(as trader keyward get okx/exec 2>/dev/null); then break; fi
	sleep 0.1
done
[ "$got" = other-value ] || fail "after reload, trader got '$got' for okx/exec"
[ "$(systemctl show -P MainPID keyward.service)" = "$pid" ] || fail "reload restarted the agent"

step "the SRE rotates a secret: served when rotate returns, no reload, no restart"
printf %s correct-horse-2 | as sre keyward rotate --grace 1h binance/mm-prod | tee /tmp/rotate.out
grep -q 'the agent now serves binance/mm-prod version 2' /tmp/rotate.out || fail "rotate: $(cat /tmp/rotate.out)"
got=$(as trader keyward get binance/mm-prod)
[ "$got" = correct-horse-2 ] || fail "after rotate, trader got '$got'"
[ "$(as trader keyward get --version 1 binance/mm-prod)" = correct-horse ] || fail "version 1 is not served in its grace period"
out=$(printf x | as sre keyward rotate binance/typo 2>&1) && fail "rotate created a secret from a typo"
echo "$out" | has 'put it first' || fail "rotate of a missing name: $out"
[ "$(systemctl show -P MainPID keyward.service)" = "$pid" ] || fail "the rotation restarted the agent"

step "a user outside keyward-clients is refused at connect"
out=$(as outsider keyward get binance/mm-prod 2>&1) && fail "outsider got a secret"
echo "$out"
echo "$out" | has -i 'permission denied' || fail "outsider: not EACCES"

step "the audit trail: journalctl -t keyward-audit"
sleep 0.2 # audit events are written in batches
journalctl -q -t keyward-audit --no-pager | tail -n 5
journalctl -q -t keyward-audit DECISION=allow SECRET=binance/mm-prod "CALLER_UID=$(id -u trader)" -o cat | has . ||
	fail "no allow event for trader and binance/mm-prod"
journalctl -q -t keyward-audit DECISION=deny SECRET=okx/exec -o cat | has . || fail "no deny event for okx/exec"
# keyward audit reads the journal when agent.audit_log is "stderr".
keyward audit --decision deny --secret okx/exec --json | has '"secret":"okx/exec"' || fail "keyward audit: no deny of okx/exec"
keyward audit --uid trader --secret 'binance/*' --op get | has ' allow get binance/mm-prod@' ||
	fail "keyward audit: no allowed get of binance/* by trader"
journalctl -q -t keyward -o cat | has 'agent ready' || fail "no 'agent ready' under -t keyward"
! journalctl -q -t keyward -o cat | has 'decision' || fail "audit events in the operational log"

step "without the credential the unit starts, and the PIN comes from pkcs11.pin_file"
mv /etc/credstore.encrypted/keyward-pin /root/keyward-pin.cred
cp /etc/keyward/keyward.toml /root/keyward.toml
install -m 0600 -o keyward -g keyward /dev/null /etc/keyward/pin
printf '%s\n' "$pin" >/etc/keyward/pin
sed -i 's|^pin_credential = .*|&\npin_file = "/etc/keyward/pin"|' /etc/keyward/keyward.toml
systemctl restart keyward.service
[ "$(as trader keyward get binance/mm-prod)" = correct-horse-2 ] || fail "no secret with the PIN from pin_file"
mv /root/keyward-pin.cred /etc/credstore.encrypted/keyward-pin
cp /root/keyward.toml /etc/keyward/keyward.toml
rm /etc/keyward/pin
unset pin

step "the token goes away and comes back: served from memory, reported, recovered without a restart"
mkdir -p /etc/systemd/system/keyward.service.d
printf '[Service]\nWatchdogSec=4s\n' >/etc/systemd/system/keyward.service.d/watchdog.conf
systemctl daemon-reload
systemctl restart keyward.service
pid=$(systemctl show -P MainPID keyward.service)
restarts=$(systemctl show -P NRestarts keyward.service)
[ "$(as trader keyward get binance/mm-prod)" = correct-horse-2 ] || fail "no secret after the restart"
token=$(ls -d /var/lib/softhsm/tokens/*/)
mv "$token" /root/token-away
for _ in $(seq 100); do
	keyward status >/tmp/status.out 2>&1 || break
	sleep 0.1
done
cat /tmp/status.out
grep -q 'UNHEALTHY' /tmp/status.out || fail "status did not report the lost token"
systemctl show -P StatusText keyward.service | has 'backend unavailable' || fail "STATUS= did not report the lost token"
[ "$(as trader keyward get binance/mm-prod)" = correct-horse-2 ] || fail "not served from memory while the token was gone"
sleep 6 # longer than WatchdogSec: the agent must not be restarted
mv /root/token-away "$token"
for _ in $(seq 150); do
	keyward status >/dev/null 2>&1 && break
	sleep 0.1
done
keyward status || fail "the agent did not recover when the token came back"
[ "$(systemctl show -P MainPID keyward.service)" = "$pid" ] || fail "the agent was restarted"
[ "$(systemctl show -P NRestarts keyward.service)" = "$restarts" ] || fail "NRestarts changed"
journalctl -q -t keyward -o cat | has 'backend unavailable' || fail "the agent did not log the lost token"
journalctl -q -t keyward-audit -o cat | has 'op=backend' || fail "no audit event for the lost token"
printf %s correct-horse-3 | as sre keyward rotate binance/mm-prod
[ "$(as trader keyward get binance/mm-prod)" = correct-horse-3 ] || fail "no rotation after the token came back"
rm -r /etc/systemd/system/keyward.service.d
systemctl daemon-reload

step "systemctl stop: a clean exit"
systemctl stop keyward.service
[ "$(systemctl show -P Result keyward.service)" = success ] || fail "Result=$(systemctl show -P Result keyward.service)"
[ "$(systemctl show -P ExecMainStatus keyward.service)" = 0 ] || fail "exit status $(systemctl show -P ExecMainStatus keyward.service)"
journalctl -q -t keyward -o cat | has 'agent stopping' || fail "no 'agent stopping' logged"
[ -S /run/keyward/agent.sock ] || fail "the agent removed the socket unit's socket"

step "the socket starts the agent again"
got=$(as trader keyward get binance/mm-prod)
[ "$got" = correct-horse-3 ] || fail "after stop, trader got '$got'"
systemctl stop keyward.socket keyward.service
[ ! -e /run/keyward/agent.sock ] || fail "the socket is left after keyward.socket stopped"

step "replacement hardware: another host's store, restored with fleet-kit shares onto this machine and a new token"
# This machine has its own machine id (systemd made it at boot) and gets
# a new token; the old host's store comes from its backup.
backup=/opt/keyward-test/oldhost
[ "$(wc -c </etc/machine-id)" = 33 ] || fail "no machine id of its own"
rm -rf /var/lib/softhsm/tokens/* /var/lib/keyward
pin=$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")
as keyward softhsm2-util --init-token --free --label keyward --pin "$pin" \
	--so-pin "$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")" >/dev/null
printf '%s' "$pin" | systemd-creds encrypt --name=keyward-pin - /etc/credstore.encrypted/keyward-pin
# restore runs outside the unit, without its credential: the PIN from a file
install -m 0600 -o keyward -g keyward /dev/null /etc/keyward/pin
printf '%s\n' "$pin" >/etc/keyward/pin
unset pin
install -o root -g root -m 0644 "$backup/fleet.kit" /etc/keyward/fleet.kit
printf '\n[recovery]\nfleet_kit = "/etc/keyward/fleet.kit"\n' >>/etc/keyward/keyward.toml
cp /etc/keyward/keyward.toml /root/keyward.toml
sed -i 's|^pin_credential = .*|&\npin_file = "/etc/keyward/pin"|' /etc/keyward/keyward.toml
install -d -m 0700 -o keyward -g keyward /var/lib/keyward
tar -C /var/lib/keyward -xpf "$backup/store.tar"
chown -R keyward:keyward /var/lib/keyward
out=$(as keyward keyward list 2>&1) && fail "the old host's envelopes opened before the restore: $out"
echo "$out" | has 'sealed on another host' || fail "list before restore: $out"
# The restore prints its restore key; two custodians re-encrypt their
# share files to it (age -d | age -a -r), and the operator pastes them.
coproc RESTORE { timeout 60 runuser -u keyward -- keyward recovery restore 2>&1 >/tmp/restore.out; }
# bash forgets these when the coprocess ends
restore_pid=$RESTORE_PID restore_out=${RESTORE[0]} restore_in=${RESTORE[1]}
key=
while IFS= read -r line <&"$restore_out"; do
	case $line in age1pq1*) ;; age1*) key=$line && break ;; esac
done
[ -n "$key" ] || fail "restore printed no restore key"
for c in alice:1 carol:3; do
	age -d -i "$backup/${c%:*}.key" "$backup/share-${c#*:}-${c%:*}.age" | age -a -r "$key"
done >&"$restore_in"
exec {restore_in}>&-
cat <&"$restore_out" || true
wait "$restore_pid" || fail "restore failed: $(cat /tmp/restore.out)"
cat /tmp/restore.out
grep -q '^restored 2 envelope(s) to pkcs11:.*, host [0-9a-f]*, with recovery kit ' /tmp/restore.out ||
	fail "restore: $(cat /tmp/restore.out)"
cp /root/keyward.toml /etc/keyward/keyward.toml
rm /etc/keyward/pin
cat >>/etc/keyward/policy.toml <<'EOF'

[[rule]]
name = "trader-fleet"
secrets = ["binance/fleet"]
users = ["trader"]
allow = ["get"]
EOF
systemctl start keyward.socket
got=$(as trader keyward get binance/fleet)
[ "$got" = fleet-horse ] || fail "after the restore onto this machine, trader got '$got'"
[ -f /var/lib/keyward/binance+fleet@1.kwe.kwf ] || fail "the restored key is not sealed to the fleet kit again"
systemctl stop keyward.socket keyward.service

step "no secret value anywhere in the journal (audit, logs)"
! journalctl -b -q --no-pager -o export | grep -a -q -e correct-horse -e other-value -e stolen -e fleet-horse -e fleet-okx ||
	fail "a secret value is in the journal"

step "keyward uninstall keeps the store and configuration"
keyward uninstall
[ -f /etc/keyward/policy.toml ] && [ -d /var/lib/keyward ] || fail "uninstall removed the store or configuration"
! systemctl cat keyward.service >/dev/null 2>&1 || fail "keyward.service is still installed"

echo
echo PASS
SCENARIO
nspawn_boot nspawn-test
