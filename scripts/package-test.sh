#!/usr/bin/env bash
# The Debian package, tested as an operator uses it: scripts/package.sh
# builds it twice from the same commit and the two are compared byte for
# byte; then it is installed into a real systemd (systemd-nspawn, on a
# throwaway overlay of this host) and:
#
#   dpkg -i creates the user and directories and enables and starts
#   nothing; keyward --version names the packaged commit; the man page and
#   completions are in place; an SRE enables keyward.socket and
#   keyward-metrics.socket; a trading user gets a secret through socket
#   activation; the metrics are scraped through the metrics socket while
#   the service keeps PrivateNetwork=yes; logrotate rotates a file audit
#   log and signals the agent; dpkg --purge leaves no unit, user or group
#   behind and keeps the store; installed again and purged with
#   KEYWARD_PURGE_DATA=yes, the store is gone too.
#
# Usage: scripts/package-test.sh [--commit REV]
#
# Needs root and systemd-nspawn; exits 77 when this machine cannot run it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
commit=HEAD
if [ "${1:-}" = --commit ]; then
	commit=${2:?--commit needs a revision}
fi
# shellcheck source=scripts/nspawn-lib.sh
. "$here/scripts/nspawn-lib.sh"
nspawn_prepare package-test

"$here/scripts/package.sh" --commit "$commit" --out "$work/a"
"$here/scripts/package.sh" --commit "$commit" --out "$work/b"
deb=$(cd "$work/a" && ls keyward_*.deb)
if ! cmp "$work/a/$deb" "$work/b/$deb" || ! cmp "$work/a/SHA256SUMS" "$work/b/SHA256SUMS"; then
	echo "package-test: two builds of $commit differ" >&2
	exit 1
fi
echo "package-test: two builds of $commit are identical ($deb)"
(cd "$work/a" && sha256sum -c SHA256SUMS)
cp "$work/a/$deb" "$root/opt/keyward-test/keyward.deb"
# man-db's dpkg trigger rebuilds the whole manual index (seconds) at each
# install and purge; the scenario does not need the index.
rm -f "$root/var/lib/man-db/auto-update"
git -C "$here" rev-parse --verify "$commit^{commit}" >"$root/opt/keyward-test/revision"

cat >"$root/opt/keyward-test/scenario.sh" <<'SCENARIO'
#!/bin/bash
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
. /opt/keyward-test/lib.sh
units="keyward.socket keyward-metrics.socket keyward.service"
scrape() { curl -sf --max-time 10 http://127.0.0.1:9464/metrics; }
# sample NAME{LABELS}: the value of one series in a scrape on stdin.
sample() { awk -v s="$1" '$1 == s { print $2; found = 1 } END { exit !found }'; }

step "dpkg -i"
# The host's users of these names are replaced, in the container only.
for u in trader keyward; do
	if id "$u" >/dev/null 2>&1; then userdel "$u"; fi
	if getent group "$u" >/dev/null; then groupdel "$u"; fi
done
if getent group keyward-clients >/dev/null; then groupdel keyward-clients; fi
dpkg -i /opt/keyward-test/keyward.deb
id keyward
getent group keyward-clients
[ "$(stat -c '%a %U' /var/lib/keyward)" = "700 keyward" ] || fail "/var/lib/keyward: $(stat -c '%a %U' /var/lib/keyward)"
for u in $units; do
	# keyward.service is "indirect": its [Install] names keyward.socket.
	case "$(systemctl is-enabled "$u" || true)" in
	disabled | indirect) ;;
	*) fail "$u is $(systemctl is-enabled "$u") after dpkg -i" ;;
	esac
	! systemctl -q is-active "$u" || fail "$u runs after dpkg -i"
done
keyward --version
keyward --version | has -F "(revision $(cat /opt/keyward-test/revision))" || fail "--version does not name the packaged commit"
dpkg -L keyward | has -x /usr/share/man/man1/keyward.1.gz || fail "no man page"
zcat /usr/share/man/man1/keyward.1.gz | has '^\.TH keyward 1' || fail "the man page is not roff"
# shellcheck disable=SC1091
. /usr/share/bash-completion/completions/keyward
COMP_WORDS=(keyward policy check --u)
COMP_CWORD=3
_keyward
[ "${COMPREPLY[*]}" = "--uid --unit" ] || fail "bash completion of 'policy check --u': ${COMPREPLY[*]}"
[ -s /usr/share/zsh/vendor-completions/_keyward ] && [ -s /usr/share/fish/vendor_completions.d/keyward.fish ] || fail "zsh or fish completion missing"
[ "$(dpkg-query -W -f='${Conffiles}' keyward | awk 'NF {print $1}' | sort | tr '\n' ' ')" = \
	"/etc/keyward/keyward.toml /etc/keyward/policy.toml /etc/logrotate.d/keyward " ] || fail "conffiles: $(dpkg-query -W -f='${Conffiles}' keyward)"

step "a SoftHSM token, init and a secret, as the keyward user (PIN in pkcs11.pin_file)"
useradd --no-create-home --shell /bin/sh --groups keyward-clients trader
pin=$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")
as keyward softhsm2-util --init-token --free --label keyward --pin "$pin" --so-pin "$pin" >/dev/null
install -m 0600 -o keyward -g keyward /dev/null /etc/keyward/pin
printf '%s\n' "$pin" >/etc/keyward/pin
sed -i 's|^pin_credential = .*|&\npin_file = "/etc/keyward/pin"|; s|^audit_log = .*|audit_log = "/var/log/keyward/audit.log"|' /etc/keyward/keyward.toml
as keyward keyward init >/dev/null
printf %s correct-horse | as keyward keyward put binance/mm-prod
printf '[[rule]]\nname = "trader"\nsecrets = ["binance/*"]\nusers = ["trader"]\nallow = ["get"]\n' >/etc/keyward/policy.toml

step "enable the sockets; a trading user gets a secret through socket activation"
systemctl enable --now keyward.socket keyward-metrics.socket
! systemctl -q is-active keyward.service || fail "keyward.service runs before any connection"
[ "$(as trader keyward get binance/mm-prod)" = correct-horse ] || fail "trader did not get the secret"
[ "$(as trader keyward get binance/mm-prod)" = correct-horse ] || fail "trader did not get the secret twice"
[ "$(systemctl show -P PrivateNetwork keyward.service)" = yes ] || fail "PrivateNetwork is not yes"
pid=$(systemctl show -P MainPID keyward.service)
[ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] || fail "the agent is in the host's network namespace"

step "metrics through keyward-metrics.socket"
scrape >/tmp/scrape1
grep '^keyward_' /tmp/scrape1 | grep -v '_bucket{' | head -n 40
n=$(sample 'keyward_requests_total{code="ok",decision="allow",op="get"}' </tmp/scrape1) || fail "no get counter"
[ "$n" -ge 2 ] || fail "keyward_requests_total for get = $n, want at least 2"
[ "$(sample keyward_secrets_loaded </tmp/scrape1)" = 1 ] || fail "keyward_secrets_loaded != 1"
[ "$(sample keyward_backend_up </tmp/scrape1)" = 1 ] || fail "keyward_backend_up != 1"
grep -q "^keyward_build_info{revision=\"$(cat /opt/keyward-test/revision)\"" /tmp/scrape1 || fail "keyward_build_info does not name the commit"
as trader keyward get binance/mm-prod >/dev/null
n2=$(scrape | sample 'keyward_requests_total{code="ok",decision="allow",op="get"}')
[ "$n2" = $((n + 1)) ] || fail "the get counter went from $n to $n2 after one get"

step "logrotate rotates the audit file and signals the agent (systemctl reload)"
[ -s /var/log/keyward/audit.log ] || fail "no audit file"
reloads=$(scrape | sample 'keyward_reloads_total{what="policy"}')
logrotate -f /etc/logrotate.d/keyward
ls -l /var/log/keyward
ls /var/log/keyward | has '^audit\.log-' || fail "audit.log was not rotated"
for _ in $(seq 50); do
	[ "$(scrape | sample 'keyward_reloads_total{what="policy"}')" = $((reloads + 1)) ] && break
	sleep 0.1
done
[ "$(scrape | sample 'keyward_reloads_total{what="policy"}')" = $((reloads + 1)) ] || fail "the agent was not reloaded by logrotate"
[ "$(systemctl show -P MainPID keyward.service)" = "$pid" ] || fail "logrotate restarted the agent"

step "dpkg --purge: no unit, user or group left; the store kept"
dpkg --purge keyward
for u in $units; do
	! systemctl -q is-active "$u" || fail "$u still runs"
	[ "$(systemctl show -P LoadState "$u")" = not-found ] || fail "$u is still known to systemd: $(systemctl show -P LoadState "$u")"
done
left=$(find /etc/systemd /usr/lib/systemd /usr/lib/sysusers.d /usr/lib/tmpfiles.d -name 'keyward*' ! -name keyward-check.service 2>/dev/null)
[ -z "$left" ] || fail "left behind: $left"
! getent passwd keyward || fail "the user keyward is left"
! getent group keyward-clients || fail "the group keyward-clients is left"
! getent group keyward || fail "the group keyward is left"
[ ! -e /usr/bin/keyward ] && [ ! -e /etc/logrotate.d/keyward ] || fail "package files left"
ls /var/lib/keyward/ | has . || fail "the purge deleted the store"

step "installed again over the kept store, then purged with KEYWARD_PURGE_DATA=yes"
dpkg -i /opt/keyward-test/keyward.deb >/dev/null
[ "$(stat -c %U /var/lib/keyward)" = keyward ] || fail "the kept store is not the new keyward user's"
KEYWARD_PURGE_DATA=yes dpkg --purge keyward
[ ! -e /var/lib/keyward ] && [ ! -e /var/log/keyward ] || fail "KEYWARD_PURGE_DATA=yes kept the store"
! getent passwd keyward || fail "the user keyward is left"

echo
echo PASS
SCENARIO
nspawn_boot package-test
