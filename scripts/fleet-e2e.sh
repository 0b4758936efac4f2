#!/usr/bin/env bash
# Fleet provisioning end to end (docs/fleet.md): Debian's ansible-playbook
# drives three hosts, each a systemd-nspawn container booted with a real
# systemd and keyward's units on a throwaway overlay of this machine's root
# file system. kwfleet1 and kwfleet2 keep their root key in their own
# SoftHSM token; kwfleet3 in its own software TPM (swtpm, the tpm backend).
#
#   bootstrap (over ssh, not Ansible's job): keyward install, a token or a
#   TPM, keyward init, a policy for the trading user;
#   examples/ansible/site.yml's role with the test's variables: fleet
#   settings, the agent makes the import key, recipient files collected,
#   two secrets and one exchange credential sealed on the control node
#   (this machine) for all three, shipped into the inboxes, the agents
#   reloaded; the trading user on each host gets its secrets through the
#   socket; a rotation shipped the same way (--tags seal,ship) is served
#   by the same agent process, without a restart; a replayed old bundle
#   is refused and changes nothing.
#
# Usage: scripts/fleet-e2e.sh [KEYWARD_BINARY]
# Needs root, systemd-nspawn, ansible-playbook, sshd, softhsm2 and swtpm;
# exits 77 when one is missing, 0 when the scenario passed.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '\n== %s\n' "$*"; }
fail() { echo "fleet-e2e: FAIL: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
	echo "fleet-e2e: needs root" >&2
	exit 77
fi
for tool in systemd-nspawn ansible-playbook sshd ssh softhsm2-util swtpm; do
	if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
		echo "fleet-e2e: $tool is missing (apt-get install systemd-container ansible-core openssh-server softhsm2 swtpm)" >&2
		exit 77
	fi
done

start=$SECONDS
work=$(mktemp -d /tmp/keyward-fleet.XXXXXX)
mounts=() pids=() tpm_pid=
hosts=(kwfleet1 kwfleet2 kwfleet3)
cleanup() {
	local rc=$? i p
	trap - EXIT INT TERM
	if [ "$rc" != 0 ]; then
		for i in 0 1 2; do
			echo "---- journal of ${hosts[i]} (keyward)" >&2
			ssh_to "$i" journalctl -b --no-pager -t keyward -t keyward-audit -t systemd 2>/dev/null | tail -n 40 >&2 || true
		done
	fi
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$p" 2>/dev/null; then
			pkill -KILL -P "$p" 2>/dev/null || true
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	[ -n "$tpm_pid" ] && kill "$tpm_pid" 2>/dev/null
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null ||
			echo "fleet-e2e: cannot unmount ${mounts[i]}" >&2
	done
	rm -rf --one-file-system "$work"
	echo "fleet-e2e: $((SECONDS - start)) s" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=${1:-}
if [ -z "$bin" ]; then
	say "building keyward"
	(cd "$here" && go build -buildvcs=false -o "$work/keyward" ./cmd/keyward)
	bin=$work/keyward
fi

ssh_key=$work/id_ed25519
ssh-keygen -q -t ed25519 -N '' -f "$ssh_key"
ssh_to() { # ssh_to INDEX COMMAND...
	local i=$1
	shift
	ssh -i "$ssh_key" -p $((2201 + i)) -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR -o ConnectTimeout=5 root@127.0.0.1 "$@"
}

say "three containers on overlays of /, booted in parallel"
mkdir "$work/tmpfs"
mount -t tmpfs -o mode=0700,size=2g keyward-fleet "$work/tmpfs"
mounts+=("$work/tmpfs")
mkdir -m 0755 "$work/tpm"
swtpm socket --tpmstate dir="$work/tpm" --tpm2 --server type=unixio,path="$work/tpm/tpm.sock" \
	--ctrl type=unixio,path="$work/tpm/ctrl.sock" --flags not-need-init,startup-clear >"$work/swtpm.log" 2>&1 &
tpm_pid=$!
for i in 0 1 2; do
	h=${hosts[i]} root=$work/root$i
	mkdir -p "$work/tmpfs/upper$i" "$work/tmpfs/work$i" "$root"
	mount -t overlay "keyward-fleet-$i" -o "lowerdir=/,upperdir=$work/tmpfs/upper$i,workdir=$work/tmpfs/work$i" "$root"
	mounts+=("$root")
	# Nothing of this machine's keyward, if any, in the way.
	rm -rf "$root/etc/keyward" "$root/var/lib/keyward" "$root/etc/credstore.encrypted/keyward-pin" \
		"$root"/usr/local/lib/systemd/system/keyward.* "$root"/usr/lib/systemd/system/keyward.* \
		"$root"/var/lib/softhsm/tokens/* "$root"/etc/systemd/system/multi-user.target.wants/*
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
	echo "$h" >"$root/etc/hostname"
	install -D -m 0755 "$bin" "$root/usr/local/bin/keyward"
	# sshd on its own loopback port: the containers share this network.
	printf 'Port %d\nListenAddress 127.0.0.1\nUsePAM no\n' $((2201 + i)) >"$root/etc/ssh/sshd_config.d/keyward-fleet.conf"
	install -d -m 0700 "$root/root/.ssh"
	install -m 0600 "$ssh_key.pub" "$root/root/.ssh/authorized_keys"
	: >"$root/root/.bashrc"
	ln -sf /lib/systemd/system/ssh.service "$root/etc/systemd/system/multi-user.target.wants/ssh.service"
	extra=()
	[ "$i" = 2 ] && extra=(--bind-ro="$work/tpm:/var/lib/swtpm-test")
	systemd-nspawn -q -D "$root" --boot --register=no --keep-unit --machine="$h" --link-journal=no "${extra[@]}" \
		>"$work/console$i.log" 2>&1 &
	pids+=($!)
done
chmod 0666 "$work/tpm/tpm.sock"
for i in 0 1 2; do
	for n in $(seq 300); do
		state=$(ssh_to "$i" systemctl is-system-running --wait 2>/dev/null) && break
		case $state in running | degraded) break ;; esac
		[ "$n" = 300 ] && { cat "$work/console$i.log" >&2; fail "${hosts[i]} did not boot"; }
		sleep 0.1
	done
done
echo "booted in $((SECONDS - start)) s"

say "bootstrap each host: keyward install, its own token or TPM, keyward init, a trading user"
bootstrap() { # bootstrap INDEX
	ssh_to "$1" BACKEND="$([ "$1" = 2 ] && echo tpm || echo pkcs11)" bash -s <<'BOOT'
set -euo pipefail
keyward install >/dev/null
for u in trader; do id "$u" >/dev/null 2>&1 && userdel "$u"; getent group "$u" >/dev/null && groupdel "$u"; done
useradd --no-create-home --shell /bin/sh --groups keyward-clients trader
cat >/etc/keyward/policy.toml <<'EOF'
[[rule]]
name = "trader"
secrets = ["binance/*", "okx/*"]
users = ["trader"]
allow = ["get"]
EOF
if [ "$BACKEND" = tpm ]; then
	sed -i 's/^backend = "pkcs11"/backend = "tpm"/' /etc/keyward/keyward.toml
	printf '\n[tpm]\ndevice = "/var/lib/swtpm-test/tpm.sock"\n' >>/etc/keyward/keyward.toml
	runuser -u keyward -- keyward init >/dev/null
else
	pin=$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")
	runuser -u keyward -- softhsm2-util --init-token --free --label keyward --pin "$pin" \
		--so-pin "$(printf '%010d' "$(od -An -N4 -tu4 /dev/urandom)")" >/dev/null
	install -d -m 0700 /etc/credstore.encrypted
	printf '%s' "$pin" | systemd-creds encrypt --name=keyward-pin - /etc/credstore.encrypted/keyward-pin
	systemd-creds decrypt --name=keyward-pin /etc/credstore.encrypted/keyward-pin - |
		runuser -u keyward -- keyward --pin-stdin init >/dev/null 2>&1
fi
systemctl start keyward.socket
BOOT
}
t=$SECONDS
for i in 0 1 2; do bootstrap "$i" & done
for i in 0 1 2; do wait -n || fail "bootstrap failed"; done
echo "bootstrapped in $((SECONDS - t)) s"

say "the control node: a provisioner key, the secrets, the inventory"
ctl=$work/ctl
mkdir -p "$ctl/secrets"
cp -r "$here/examples/ansible/roles" "$ctl/"
"$bin" provisioner new --out "$ctl/provisioner.key" >"$ctl/provisioner.pub" 2>/dev/null
printf 'mm-secret-v1' >"$ctl/secrets/binance-mm"
printf 'okx-exec-v1' >"$ctl/secrets/okx-exec"
printf 'hmac-credential-v1' >"$ctl/secrets/binance-cred"
{
	echo "[keyward_hosts]"
	for i in 0 1 2; do echo "${hosts[i]} ansible_host=127.0.0.1 ansible_port=$((2201 + i))"; done
	echo "[keyward_hosts:vars]"
	echo "ansible_user=root"
	echo "ansible_python_interpreter=/usr/bin/python3"
	echo "ansible_ssh_private_key_file=$ssh_key"
} >"$ctl/inventory"
cat >"$ctl/ansible.cfg" <<EOF
[defaults]
host_key_checking = False
forks = 3
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
control_path_dir = $work/cp
EOF
cat >"$ctl/site.yml" <<EOF
- name: Provision keyward secrets (the test's variables for examples/ansible's role)
  hosts: keyward_hosts
  gather_facts: false
  vars:
    keyward_seal_bin: $bin
    keyward_provisioner_key: $ctl/provisioner.key
    keyward_provisioners: ["$(cat "$ctl/provisioner.pub")"]
    keyward_inbox: /var/lib/keyward/inbox
    keyward_secrets: "{{ keyward_secrets_override | default(all_secrets) }}"
    all_secrets:
      - {name: binance/mm, from_file: $ctl/secrets/binance-mm}
      - {name: okx/exec, from_file: $ctl/secrets/okx-exec}
      - {name: binance/cred, from_file: $ctl/secrets/binance-cred, exchange: binance, api_key: AKIDFLEET}
  roles:
    - keyward_fleet
EOF
export ANSIBLE_CONFIG=$ctl/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=default
play() { (cd "$ctl" && ansible-playbook -i inventory site.yml "$@") >"$work/play.log" 2>&1 || { cat "$work/play.log" >&2; fail "ansible-playbook $*"; }; }

say "ansible-playbook: enroll, seal, ship"
t=$SECONDS
play
echo "playbook: $((SECONDS - t)) s"
for i in 0 1 2; do [ -s "$ctl/recipients/${hosts[i]}.recipient" ] || fail "no recipient file of ${hosts[i]}"; done
cp "$ctl/recipients/kwfleet1.recipient" "$work/old.recipient"

get() { ssh_to "$1" timeout 20 runuser -u trader -- keyward get "$2"; }
for i in 0 1 2; do
	[ "$(get "$i" binance/mm)" = mm-secret-v1 ] || fail "${hosts[i]}: binance/mm"
	[ "$(get "$i" okx/exec)" = okx-exec-v1 ] || fail "${hosts[i]}: okx/exec"
	# (Outputs are read whole: grep -q closing a pipe early would fail it.)
	grep -q 'binance API key AKIDFLEET' <<<"$(ssh_to "$i" keyward inspect /var/lib/keyward/binance+cred@1.kwe)" ||
		fail "${hosts[i]}: binance/cred is not an exchange credential"
	grep -q 'bundle binance+mm.kwb from provisioner' <<<"$(ssh_to "$i" journalctl -q -t keyward-audit -o cat)" ||
		fail "${hosts[i]}: no audit event for the import"
done
ssh_to 2 grep -q "'^backend = \"tpm\"'" /etc/keyward/keyward.toml || fail "kwfleet3 is not on the tpm backend"

say "a rotation shipped the same way is served by the same agent process"
declare -a mainpid
for i in 0 1 2; do mainpid[i]=$(ssh_to "$i" systemctl show -P MainPID keyward.service); done
cp "$ctl/secrets/binance-mm" "$work/mm-v1"
printf 'mm-secret-v2' >"$ctl/secrets/binance-mm"
# A bundle sealed before the rotation's, to replay afterwards.
"$bin" seal --key "$ctl/provisioner.key" --to "$work/old.recipient" --out "$work/old" --from-file "$work/mm-v1" binance/mm >/dev/null
t=$SECONDS
play --tags seal,ship -e '{"keyward_secrets_override": [{"name": "binance/mm", "from_file": "'"$ctl"'/secrets/binance-mm"}]}'
echo "rotation playbook: $((SECONDS - t)) s"
for i in 0 1 2; do
	[ "$(get "$i" binance/mm)" = mm-secret-v2 ] || fail "${hosts[i]}: binance/mm after the rotation"
	[ "$(ssh_to "$i" systemctl show -P MainPID keyward.service)" = "${mainpid[i]}" ] || fail "${hosts[i]}: the agent restarted"
	grep -Eq '^binance/mm +1 .*grace' <<<"$(ssh_to "$i" runuser -u keyward -- keyward list)" ||
		fail "${hosts[i]}: version 1 not in its grace period"
done

say "an old bundle replayed into an inbox is refused and changes nothing"
scp -q -i "$ssh_key" -P 2201 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
	"$work/old/old/binance+mm.kwb" root@127.0.0.1:/var/lib/keyward/inbox/replayed.kwb
ssh_to 0 'chown keyward: /var/lib/keyward/inbox/replayed.kwb && systemctl reload keyward.service'
for _ in $(seq 100); do ssh_to 0 test -e /var/lib/keyward/inbox/replayed.kwb.rejected && break; sleep 0.1; done
ssh_to 0 test -e /var/lib/keyward/inbox/replayed.kwb.rejected || fail "the replayed bundle was not refused"
[ "$(get 0 binance/mm)" = mm-secret-v2 ] || fail "the replayed bundle changed binance/mm"
grep -q 'replayed.kwb refused: store: bundle is not newer' <<<"$(ssh_to 0 journalctl -q -t keyward-audit -o cat)" ||
	fail "no audit event for the refused replay"

say "passed"
