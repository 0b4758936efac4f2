# Sourced by scripts/test.sh and scripts/demo.sh: installs the Debian
# packages keyward's tests and demo need, when they are missing.

keyward_packages=(softhsm2 opensc swtpm swtpm-tools tpm2-tools libssl-dev gcc libc6-dev ca-certificates systemd-container age
	ansible-core openssh-server openssh-client logrotate)

install_deps() {
	local missing=() p sudo=""
	for p in "${keyward_packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || sudo=sudo
		echo "installing: ${missing[*]}"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	if ! command -v go >/dev/null; then
		echo "keyward needs Go 1.26 or newer on PATH (https://go.dev/doc/install); Debian 12's golang package is too old" >&2
		return 1
	fi
}

# install_js_deps installs what agent/exchange's differential tests run: Node.js
# and npm (from Debian, only if the commands are missing: a machine may have
# them from elsewhere, and NodeSource's nodejs bundles npm), then the ccxt
# that js/package-lock.json pins, without running package scripts.
install_js_deps() {
	local missing=() sudo=""
	command -v node >/dev/null || missing+=(nodejs)
	command -v npm >/dev/null || missing+=(npm)
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || sudo=sudo
		echo "installing: ${missing[*]}"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	[ -f js/node_modules/ccxt/package.json ] && return 0
	echo "installing ccxt for the exchange tests: npm ci in js/"
	(cd js && npm ci --ignore-scripts --no-audit --no-fund)
}

# install_python_deps installs what the Python package's build and tests
# need from Debian (never PyPI): python3, and setuptools, wheel and pip to
# build its wheel with Debian's python3 (/usr/bin/python3, whatever else
# is on PATH) without build isolation.
install_python_deps() {
	local sudo=""
	/usr/bin/python3 -c 'import setuptools, wheel, pip' 2>/dev/null && return 0
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "installing: python3 python3-setuptools python3-wheel python3-pip"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3 python3-setuptools python3-wheel python3-pip >/dev/null
}
