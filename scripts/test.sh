#!/usr/bin/env bash
# Runs keyward's whole test suite on a fresh Debian 12 machine: installs
# what the tests need (apt packages, Go modules, promtool, nfpm), then
# checks formatting, runs go vet, the tests under the race detector with
# SoftHSM and the software TPM required (a missing tool fails the run
# instead of skipping), the load test the race detector skips without it,
# two short soaks of the agent through HSM faults, a short run of every
# fuzz target, and the Debian package: built twice and compared, then
# installed under systemd in a container.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
install_deps
install_js_deps
install_python_deps
PATH="$PATH:$(install_promtool)"

export KEYWARD_TEST_REQUIRE_HARDWARE=1
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

step() { printf '\n== %s\n' "$*"; }

step "go mod download"
go mod download

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change these files:"; echo "$unformatted"
	exit 1
fi

step "go vet"
go vet ./...

step "python wheel"
# Built from a copy (setuptools writes build/ and egg-info beside the
# sources) with Debian's python3 and setuptools, then installed into a
# directory of its own: client/langs_test.go's TestPython tests the
# installed package (with the python3 on PATH), not the source tree.
export PIP_ROOT_USER_ACTION=ignore # pip as root, into a directory of its own
pydir=$(mktemp -d)
trap 'rm -rf "$pydir"' EXIT
cp -r python "$pydir/src"
/usr/bin/python3 -m pip wheel -q --no-build-isolation --no-deps --no-index -w "$pydir/dist" "$pydir/src"
/usr/bin/python3 -m pip install -q --no-deps --no-index --target "$pydir/site" "$pydir"/dist/keyward-*.whl
test -f "$pydir/site/keyward/py.typed"
export KEYWARD_TEST_PYTHONPATH="$pydir/site"

step "go test -race (with the Python and Node.js suites, client/langs_test.go)"
go test -race -count=1 -timeout 15m ./...

step "go test (load tests the race detector skips)"
go test -count=1 -run '^TestConnectFloodDoesNotStarveOthers$' ./agent/

# The agent as a real process through HSM faults (docs/operations.md,
# "Soak test"); each run fails the suite on any failed check.
step "soak (short): 16 connections for 60 s, the token directory gone for 10 s"
bash scripts/soak.sh --conns 16 --duration 60s

step "soak (short): through the fault-injecting PKCS #11 module, 30 s"
bash scripts/soak.sh --conns 16 --shim --duration 30s

step "fleet provisioning end to end: ansible-playbook and three booted containers (scripts/fleet-e2e.sh)"
bash scripts/fleet-e2e.sh

step "fuzz (short runs over the committed corpus and beyond)"
# A count of executions rather than a duration: with a duration, Go's fuzzing
# coordinator can fail with "context deadline exceeded" when the time runs
# out while a worker is busy (seen on loaded 2-core machines).
fuzztime="${KEYWARD_FUZZTIME:-100000x}" # 27 targets: about 3 minutes on 2 cores
while read -r pkg target; do
	echo "-- $target in $pkg"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg"
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "./$(dirname "${f#./}") $t"
	done
done | sort -u)

step "Debian package: two builds compared, installed under systemd (scripts/package-test.sh)"
scripts/package-test.sh

step "all tests passed"
