# Sourced by scripts/test.sh, scripts/demo.sh and scripts/package.sh:
# installs the Debian packages keyward's tests and demo need, when they are
# missing, and the build tools the package and the metrics tests use.

keyward_packages=(softhsm2 opensc swtpm swtpm-tools tpm2-tools libssl-dev gcc libc6-dev ca-certificates systemd-container age
	ansible-core openssh-server openssh-client logrotate curl zsh fish)

# apt_get runs apt-get, as root, waiting up to 10 minutes for the dpkg and
# package-list locks instead of failing while another apt runs (a freshly
# booted host runs apt-daily).
apt_get() {
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 "$@"
}

# apt_install installs the named packages, with their package lists
# updated first.
apt_install() {
	echo "installing: $*"
	apt_get update -qq
	apt_get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_deps() {
	local missing=() p
	for p in "${keyward_packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		apt_install "${missing[@]}"
	fi
	if ! command -v go >/dev/null; then
		echo "keyward needs Go 1.26 or newer on PATH (https://go.dev/doc/install); Debian 12's golang package is too old" >&2
		return 1
	fi
}

# install_js_deps installs what agent/exchange's differential tests and the
# Node.js package's tests run: Node.js and npm (from Debian, only if the
# commands are missing: a machine may have them from elsewhere, and
# NodeSource's nodejs bundles npm), then the ccxt, TypeScript and Node.js
# types that js/package-lock.json pins, without running package scripts.
install_js_deps() {
	local missing=()
	command -v node >/dev/null || missing+=(nodejs)
	command -v npm >/dev/null || missing+=(npm)
	if [ ${#missing[@]} -gt 0 ]; then
		apt_install "${missing[@]}"
	fi
	local p
	for p in ccxt typescript @types/node; do
		[ -f "js/node_modules/$p/package.json" ] || {
			echo "installing the Node.js test dependencies (ccxt, typescript, @types/node): npm ci in js/"
			(cd js && npm ci --ignore-scripts --no-audit --no-fund)
			return
		}
	done
}

# install_python_deps installs what the Python package's build and tests
# need from Debian (never PyPI): python3, and setuptools, wheel and pip to
# build its wheel with Debian's python3 (/usr/bin/python3, whatever else
# is on PATH) without build isolation.
install_python_deps() {
	/usr/bin/python3 -c 'import setuptools, wheel, pip' 2>/dev/null && return 0
	apt_install python3 python3-setuptools python3-wheel python3-pip
}

keyward_cache=${XDG_CACHE_HOME:-$HOME/.cache}/keyward

# install_nfpm prints the path of nfpm, the Debian packager
# scripts/package.sh uses, at its pinned version, installing it with
# go install into a cache the first time (downloads its modules: minutes
# on a fresh machine, then cached).
nfpm_version=v2.45.2
install_nfpm() {
	local dir=$keyward_cache/nfpm-$nfpm_version
	if [ ! -x "$dir/nfpm" ]; then
		echo "installing nfpm $nfpm_version (go install) into $dir" >&2
		GOBIN=$dir GOFLAGS= go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$nfpm_version" >&2
	fi
	echo "$dir/nfpm"
}

# install_promtool prints the directory of promtool, which checks the
# alert rules of docs/metrics.md: from PATH, or taken out of Debian's
# prometheus package into a cache, so that no Prometheus server is
# installed (or started) on the machine.
install_promtool() {
	local p dir tmp deb
	if p=$(command -v promtool); then
		dirname "$p"
		return 0
	fi
	dir=$keyward_cache/promtool
	if [ ! -x "$dir/promtool" ]; then
		echo "taking promtool out of Debian's prometheus package into $dir" >&2
		tmp=$(mktemp -d)
		(cd "$tmp" && apt-get download prometheus >&2 || { apt_get update -qq && apt-get download prometheus >&2; })
		deb=$(ls "$tmp"/prometheus_*.deb)
		mkdir -p "$dir"
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
		mv "$tmp/usr/bin/promtool" "$dir/promtool"
		rm -rf "$tmp"
	fi
	echo "$dir"
}
