#!/usr/bin/env bash
# Builds keyward's Debian package, keyward_VERSION_ARCH.deb, and a
# SHA256SUMS file beside it, from a commit (default HEAD; uncommitted
# changes are not packaged). Two builds of one commit give the same bytes:
# the commit is checked out afresh, its commit time is SOURCE_DATE_EPOCH
# (every file's mtime in the package), the binary is built with -trimpath
# and the VCS stamp of a clean tree (keyward --version prints the
# revision), and the packager, nfpm, is a pinned version.
#
# The package holds the binary (/usr/bin/keyward), what `keyward install
# --root STAGE --prefix /usr` writes (units, sysusers.d and tmpfiles.d
# snippets, configuration and policy skeletons as conffiles), the manual
# page and the bash, zsh and fish completions (generated from the command
# definitions), a logrotate snippet, the docs, and maintainer scripts
# (scripts/package/) that create the user and directories and never
# enable or start anything.
#
# Usage: scripts/package.sh [--out DIR] [--commit REV]
#   --out DIR     where the .deb and SHA256SUMS go (default .dist/ in this checkout)
#   --commit REV  the commit to package (default HEAD)
#
# Needs Go 1.26, git, gcc (cgo) and dpkg; installs nfpm with go install
# into a cache the first time. The version is that of a v* tag on the
# commit, or BASE~gitYYYYMMDDHHMMSS.REV, BASE from cmd/keyward/main.go.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/go/bin"
# shellcheck source=scripts/deps.sh
. "$here/scripts/deps.sh"

out=$here/.dist commit=HEAD
usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=${2:?--out needs a directory}; shift 2 ;;
	--commit) commit=${2:?--commit needs a revision}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "package.sh: unknown argument $1" >&2; usage ;;
	esac
done

start=$(date +%s%N)
nfpm=$(install_nfpm)
rev=$(git -C "$here" rev-parse --verify "$commit^{commit}")
if [ "$commit" = HEAD ] && [ -n "$(git -C "$here" status --porcelain --untracked-files=no)" ]; then
	echo "package.sh: note: uncommitted changes are not packaged; building $rev" >&2
fi
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct "$rev")
if tag=$(git -C "$here" describe --tags --exact-match --match 'v[0-9]*' "$rev" 2>/dev/null); then
	version=${tag#v}
else
	base=$(git -C "$here" show "$rev:cmd/keyward/main.go" | sed -n 's/^var Version = "\([0-9][0-9.]*\).*"$/\1/p')
	version=${base:-0}~git$(TZ=UTC date -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).${rev:0:12}
fi
arch=$(dpkg --print-architecture)

work=$(mktemp -d /tmp/keyward-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A fresh checkout of the commit: a clean tree (the VCS stamp says
# vcs.modified=false) and a .git directory, which the go command needs to
# stamp the revision (it does not stamp git worktrees).
git clone -q --shared --no-checkout "$here" "$work/src"
git -C "$work/src" -c advice.detachedHead=false checkout -q "$rev"

echo "package.sh: building keyward $version ($arch) from $rev"
stage=$work/stage
mkdir -p "$stage/usr/bin"
# -buildvcs=true overrides a GOFLAGS=-buildvcs=false (scripts/test.sh sets it).
(cd "$work/src" && CGO_ENABLED=1 go build -trimpath -buildvcs=true \
	-ldflags "-s -w -X main.Version=$version" -o "$stage/usr/bin/keyward" ./cmd/keyward)
kw=$stage/usr/bin/keyward

"$kw" install --root "$stage" --prefix /usr >/dev/null
install -d "$stage/usr/share/man/man1" "$stage/usr/share/bash-completion/completions" \
	"$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
"$kw" man | gzip -9n >"$stage/usr/share/man/man1/keyward.1.gz"
"$kw" completion bash >"$stage/usr/share/bash-completion/completions/keyward"
"$kw" completion zsh >"$stage/usr/share/zsh/vendor-completions/_keyward"
"$kw" completion fish >"$stage/usr/share/fish/vendor_completions.d/keyward.fish"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f ! -path '*/usr/bin/*' -exec chmod 0644 {} +

deb=keyward_${version}_${arch}.deb
(cd "$work" && ARCH=$arch VERSION=$version "$nfpm" package --config src/scripts/package/nfpm.yaml \
	--packager deb --target "$work/$deb" >/dev/null)
mkdir -p "$out"
mv -f "$work/$deb" "$out/$deb"
(cd "$out" && sha256sum "$deb" >SHA256SUMS)
echo "package.sh: $out/$deb ($(stat -c %s "$out/$deb") bytes) in $((($(date +%s%N) - start) / 1000000)) ms"
cat "$out/SHA256SUMS"
