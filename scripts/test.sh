#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need when
# it is missing, then runs the checks and the tests. The README's test command
# and .ci/run both call exactly this script.
#
#   scripts/test.sh            everything (format, vet, staticcheck, tidy, race tests)
#   SHOAL_SKIP_LINT=1 ...      tests only (for a quick local loop)
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo /root/go)/bin"
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2

step() { printf '\n=== %s\n' "$*"; }

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "scripts/test.sh: installing $* needs root (or install it yourself)" >&2
		exit 1
	fi
}

# apt_install installs Debian packages whose command is missing.
apt_updated=
apt_install() {
	need_root "$*"
	if [ -z "$apt_updated" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

step "tools"
command -v go >/dev/null || { echo "Go 1.26 is required (https://go.dev/doc/install)" >&2; exit 1; }
go version
command -v git >/dev/null || apt_install git
# End-to-end tests drive a real browser with a fake camera.
command -v chromium >/dev/null || apt_install chromium
# The wire-compatibility test loads the seed SFU's published JavaScript SDK,
# unchanged, from its npm package (installed once into a cache).
command -v npm >/dev/null || apt_install npm
# The multi-cluster gossip channel's tests run a real Redis.
command -v redis-server >/dev/null || apt_install redis-server
# Network tests put hosts in namespaces and limit links with tc.
command -v ip >/dev/null && command -v tc >/dev/null || apt_install iproute2
export SHOAL_SORA_JS_SDK="${SHOAL_SORA_JS_SDK:-$HOME/.cache/shoal/sora-js-sdk}"
[ -f "$SHOAL_SORA_JS_SDK/node_modules/sora-js-sdk/dist/sora.js" ] ||
	npm install --prefix "$SHOAL_SORA_JS_SDK" --no-audit --no-fund sora-js-sdk@2026.1.0 >/dev/null

if [ -z "${SHOAL_SKIP_LINT:-}" ]; then
	step "gofmt"
	unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
	if [ -n "$unformatted" ]; then
		echo "gofmt would change:"; echo "$unformatted"; exit 1
	fi

	step "go mod tidy -diff"
	go mod tidy -diff

	step "go vet"
	go vet ./...

	step "staticcheck $STATICCHECK_VERSION"
	go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...
fi

step "go test -race"
# -p 1: the packages run real clusters, peer connections and browsers with
# timeouts of their own; one package at a time keeps them from starving each
# other on a 2-core machine (the whole run takes about 3 minutes).
# Build every test binary first, in parallel (-p 1 below would build them one by one).
bins=$(mktemp -d)
go test -race -c -o "$bins/" ./...
rm -rf "$bins"
# The output is kept: CI shows only the end of a long log, so a failure ends
# with a digest of what failed, and for a hang, the tests that were running
# and where their goroutines were stuck.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if go test -race -count=1 -p 1 -timeout 6m "$@" ./... 2>&1 | tee "$log"; then
	exit 0
fi
step "digest of the failures"
awk '
	/^WARNING: DATA RACE/ { race = 1 }
	race { print; if (/^==================/) race = 0; next }
	/^(--- FAIL|FAIL|panic:|    --- FAIL|        --- FAIL)/ { print; if (/test timed out/) running = 12; next }
	/^ +[a-z_0-9]+_test\.go:[0-9]+: / { print; next } # t.Error and t.Log lines of failed tests
	running > 0 { if ($0 == "") running = 0; else { print; running-- } next }
	/^goroutine [0-9]+ / { head = $0; shown = 0; next }
	/^$/ { head = ""; shown = 1; next } # a goroutine block ends at a blank line
	/_test\.go:[0-9]+/ { if (!shown) { print head; shown = 1 } print "   " $0 }
' "$log" | head -200
exit 1
