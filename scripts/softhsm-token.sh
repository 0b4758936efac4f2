#!/usr/bin/env bash
# softhsm-token.sh DIR [LABEL]
#
# Makes a throwaway SoftHSM token for trying keyward by hand: DIR gets its
# own softhsm2.conf, a token directory, and a random 8-digit user PIN in
# DIR/pin (mode 0600). Prints the SOFTHSM2_CONF export line and a PKCS #11
# URI for the root key. The PIN is never printed. `go test` does not need
# this script (tests use internal/testenv).
set -euo pipefail

usage() {
	echo "usage: $0 DIR [LABEL]" >&2
	exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage
dir=$1
label=${2:-keyward-dev}
if [[ ! $label =~ ^[A-Za-z0-9._-]{1,32}$ ]]; then
	echo "$0: LABEL must be 1 to 32 characters of A-Z a-z 0-9 . _ -" >&2
	exit 2
fi

if ! command -v softhsm2-util >/dev/null; then
	echo "$0: softhsm2-util not found: apt-get install softhsm2" >&2
	exit 1
fi
module=
for m in "${KEYWARD_SOFTHSM_MODULE:-}" /usr/lib/softhsm/libsofthsm2.so \
	/usr/lib/"$(uname -m)"-linux-gnu/softhsm/libsofthsm2.so \
	/usr/lib64/pkcs11/libsofthsm2.so /usr/lib/pkcs11/libsofthsm2.so \
	/usr/local/lib/softhsm/libsofthsm2.so; do
	if [[ -n $m && -f $m ]]; then
		module=$m
		break
	fi
done
if [[ -z $module ]]; then
	echo "$0: the SoftHSM module libsofthsm2.so was not found: apt-get install softhsm2" >&2
	exit 1
fi

umask 077
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [[ -e $dir/softhsm2.conf || -e $dir/pin ]]; then
	echo "$0: $dir already holds a token; choose an empty directory" >&2
	exit 1
fi
mkdir "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" >"$dir/softhsm2.conf"

# digits N: N random decimal digits.
digits() {
	local out= n
	while ((${#out} < $1)); do
		n=$(od -An -N4 -tu4 /dev/urandom)
		n=${n//[[:space:]]/}
		# Drop the top of the range so that every digit is equally likely.
		if ((n < 4000000000)); then
			out+=$(printf '%09d' $((n % 1000000000)))
		fi
	done
	printf '%s' "${out:0:$1}"
}
pin=$(digits 8)
so_pin=$(digits 16)
printf '%s\n' "$pin" >"$dir/pin" # printf is a builtin: the PIN is in no argv here

# softhsm2-util takes PINs only as arguments or from a terminal; these are
# throwaway PINs, visible in ps for the few milliseconds it runs.
SOFTHSM2_CONF=$dir/softhsm2.conf softhsm2-util --init-token --free --label "$label" \
	--pin "$pin" --so-pin "$so_pin" >/dev/null
unset pin so_pin

echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "pkcs11:token=$label;object=keyward-root?module-path=$module&pin-source=file:$dir/pin"
