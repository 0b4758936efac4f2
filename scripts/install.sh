#!/usr/bin/env bash
# Installs keyward on this host, or into a staging root for an image build:
# the binary to PREFIX/bin/keyward (mode 0755, root), then `keyward install`
# for the systemd units, the keyward user and groups, the directories and
# the configuration and policy skeletons. Safe to run again (an upgrade):
# the binary and units are replaced, the configuration and policy kept.
#
# Production hosts need no Go: build on a build host and copy the binary,
#   build host:  scripts/install.sh --build-only ./keyward
#   trading host (as root):  ./install.sh --binary ./keyward
#
# Usage: scripts/install.sh [--prefix /usr/local|/usr] [--root DIR] [--dry-run]
#                           [--binary FILE | --build-only FILE]
set -euo pipefail

prefix=/usr/local root= dry_run= binary= build_only=
usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
	--root) root=${2:?--root needs a directory}; shift 2 ;;
	--dry-run) dry_run=1; shift ;;
	--binary) binary=${2:?--binary needs a file}; shift 2 ;;
	--build-only) build_only=${2:?--build-only needs an output file}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "install.sh: unknown argument $1" >&2; usage ;;
	esac
done
case $prefix in
/usr/local | /usr) ;;
*) echo "install.sh: --prefix must be /usr/local or /usr, where systemd looks for units" >&2; exit 2 ;;
esac

build() {
	local out=$1 here version
	here=$(cd "$(dirname "$0")/.." && pwd)
	export PATH="$PATH:/usr/local/go/bin"
	if ! command -v go >/dev/null; then
		echo "install.sh: building needs Go 1.26 on PATH; on a host without Go, use --binary with a keyward built elsewhere" >&2
		exit 1
	fi
	version=$(git -C "$here" describe --tags --always --dirty 2>/dev/null || echo dev)
	echo "building keyward $version"
	(cd "$here" && CGO_ENABLED=1 go build -trimpath -buildvcs=false \
		-ldflags "-X main.Version=$version" -o "$out" ./cmd/keyward)
}

if [ -n "$build_only" ]; then
	build "$build_only"
	exit 0
fi

tmp=
trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT
if [ -z "$binary" ]; then
	tmp=$(mktemp -d)
	binary=$tmp/keyward
	build "$binary"
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }

dest=${root%/}$prefix/bin/keyward
args=(install --prefix "$prefix")
[ -z "$root" ] || args+=(--root "$root")
if [ -n "$dry_run" ]; then
	echo "would install $binary as $dest (0755 root:root)"
	"$binary" "${args[@]}" --dry-run
	exit 0
fi
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
	echo "install.sh: installing on this host needs root (or --root DIR, or --dry-run)" >&2
	exit 1
fi
install -d -m 0755 "$(dirname "$dest")"
# Replace the binary atomically: a running agent keeps its old inode and
# picks up the new one at the next restart (docs/operations.md, "Upgrade").
install -m 0755 "$binary" "$dest.new"
mv -f "$dest.new" "$dest"
echo "installed $dest ($("$dest" version))"
"$dest" "${args[@]}"
