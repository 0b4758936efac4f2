# Sourced by scripts/nspawn-test.sh and scripts/package-test.sh: a real
# systemd as PID 1 in systemd-nspawn, on a throwaway overlay of this
# host's root file system (docs/operations.md, "Tests of this page").
#
#   nspawn_prepare NAME   checks root and systemd-nspawn (exit 77 when
#                         missing), mounts the overlay at $root, writes
#                         $root/opt/keyward-test/ and the check unit that
#                         runs $root/opt/keyward-test/scenario.sh, which
#                         sources /opt/keyward-test/lib.sh (step, fail, as,
#                         the journal kept on failure); undoes every mount
#                         on exit
#   nspawn_boot NAME      boots the container into the check unit, prints
#                         the scenario's log (and the journal when it
#                         failed) and exits with the scenario's status
#
# After nspawn_prepare, $work is a scratch directory removed on exit.

nspawn_prepare() {
	local name=$1
	if [ "$(id -u)" != 0 ]; then
		echo "$name: needs root" >&2
		exit 77
	fi
	if ! command -v systemd-nspawn >/dev/null; then
		echo "$name: systemd-nspawn is missing: apt-get install systemd-container" >&2
		exit 77
	fi
	work=$(mktemp -d "/tmp/keyward-$name.XXXXXX")
	nspawn_mounts=()
	trap nspawn_cleanup EXIT
	trap 'exit 130' INT TERM

	# A tmpfs holds the overlay's upper and work directories: everything
	# the container writes is thrown away with it.
	mkdir "$work/tmpfs" "$work/root"
	mount -t tmpfs -o mode=0700,size=1g keyward-nspawn "$work/tmpfs"
	nspawn_mounts+=("$work/tmpfs")
	mkdir "$work/tmpfs/upper" "$work/tmpfs/work"
	mount -t overlay keyward-nspawn -o "lowerdir=/,upperdir=$work/tmpfs/upper,workdir=$work/tmpfs/work" "$work/root"
	nspawn_mounts+=("$work/root")
	root=$work/root

	rm -f "$root/etc/machine-id"
	# Leave nothing of the host's keyward installation, if any, in the way.
	rm -rf "$root/etc/keyward" "$root/var/lib/keyward" "$root/var/log/keyward" "$root/etc/credstore.encrypted/keyward-pin" \
		"$root"/usr/local/lib/systemd/system/keyward* "$root"/usr/lib/systemd/system/keyward* \
		"$root"/var/lib/softhsm/tokens/*
	mkdir -p "$root/opt/keyward-test/out"
	# What every scenario sources.
	cat >"$root/opt/keyward-test/lib.sh" <<'LIB'
step() { printf '\n== %s (at %ss)\n' "$*" "$SECONDS"; }
fail() { echo "FAIL: $*"; exit 1; }
on_exit() {
	local rc=$?
	if [ "$rc" != 0 ]; then
		echo "scenario failed (status $rc); the boot's journal is in journal.log"
		journalctl -b --no-pager -o short-monotonic >/opt/keyward-test/out/journal.log 2>&1 || true
		systemctl status --no-pager keyward.socket keyward.service || true
	fi
}
trap on_exit EXIT
# has [GREP-OPTION...] PATTERN: whether standard input has a line that
# matches, read to its end first. "cmd | grep -q" stops reading at the
# first match, and under pipefail the writer's SIGPIPE then fails the step
# at random.
has() { local in; in=$(cat); grep -q "$@" <<<"$in"; }
# A client call with a deadline: a hung agent fails the step, not the run.
as() { local u=$1; shift; timeout 20 runuser -u "$u" -- "$@"; }
LIB
	cat >"$root/etc/systemd/system/keyward-check.service" <<'UNIT'
[Unit]
Description=keyward scenario under systemd
[Service]
Type=oneshot
ExecStart=/bin/bash -c '/opt/keyward-test/scenario.sh >/opt/keyward-test/out/scenario.log 2>&1; systemctl exit $$?'
UNIT
}

nspawn_cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#nspawn_mounts[@]} - 1; i >= 0; i--)); do
		umount "${nspawn_mounts[i]}" 2>/dev/null || umount -l "${nspawn_mounts[i]}" 2>/dev/null ||
			echo "nspawn: cannot unmount ${nspawn_mounts[i]}" >&2
	done
	rm -rf --one-file-system "$work"
	exit "$rc"
}

nspawn_boot() {
	local name=$1 rc=0 log=$root/opt/keyward-test/out/scenario.log
	chmod 0755 "$root/opt/keyward-test/scenario.sh"
	echo "$name: booting systemd in systemd-nspawn"
	timeout --kill-after=10s 150s systemd-nspawn -q -D "$root" --private-network --register=no --keep-unit \
		--link-journal=no -b -- systemd.unit=keyward-check.service </dev/null || rc=$?
	cat "$log" 2>/dev/null || echo "$name: the scenario left no log"
	if [ "$rc" != 0 ] && [ -s "$root/opt/keyward-test/out/journal.log" ]; then
		echo "---- journal of the container's boot (last 150 lines)"
		tail -n 150 "$root/opt/keyward-test/out/journal.log"
	fi
	if [ "$rc" = 0 ] && ! grep -q '^PASS$' "$log" 2>/dev/null; then
		echo "$name: the container exited 0 but the scenario did not pass" >&2
		rc=1
	fi
	echo "$name: status $rc"
	exit "$rc"
}
