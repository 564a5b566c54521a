#!/usr/bin/env bash
# scripts/vuln.sh — known vulnerabilities block the build, offline.
#
# Scans the module with govulncheck against a pinned snapshot of the Go
# vulnerability database, built locally from the golang.org/x/vulndb module.
# The only network used is the Go module proxy (and the checksum database
# through it): no call to vuln.go.dev, so the same inputs give the same answer
# on every machine, today and in a year.
#
#   bash scripts/vuln.sh            # exit 0: clean; 3: vulnerabilities; other: error
#
# Environment:
#   VULN_SCAN=symbol|package         govulncheck -scan level. symbol (default):
#                                    fail when vulnerable code is reachable from
#                                    ours; package: when a vulnerable package is
#                                    imported at all. (-scan module is not offered:
#                                    it needs a package in the module root.)
#   AGENTSIGNA_VULNDB_CACHE          where built databases are kept (default
#                                    ${XDG_CACHE_HOME:-$HOME/.cache}/agentsigna/vulndb).
#
# To move to a newer database or scanner, change the pins below (the sum of a
# vulndb version: `go mod download -json golang.org/x/vulndb@VERSION`).
set -euo pipefail

# Pins. govulncheck must be built by the same Go that builds the project, or it
# cannot load the packages; the toolchain is pinned for the whole script.
readonly GO_TOOLCHAIN=go1.27.3
readonly GOVULNCHECK_VERSION=v1.9.0
readonly VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
readonly VULNDB_SUM='h1:mfngRv0Yoh0VApsXKEN82CjD99kl7mtparN3bs3JnqI='

export GOTOOLCHAIN="$GO_TOOLCHAIN"
export GOWORK=off

step() { printf 'vuln: %s\n' "$*" >&2; }
die() { printf 'vuln: error: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.bin"
cache_root="${AGENTSIGNA_VULNDB_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME or XDG_CACHE_HOME must be set}/.cache}/agentsigna/vulndb}"
db="$cache_root/$VULNDB_VERSION"
scan="${VULN_SCAN:-symbol}"
case "$scan" in symbol | package) ;; *) die "VULN_SCAN must be symbol or package, not '$scan'" ;; esac

tmp="$(mktemp -d "${TMPDIR:-/tmp}/agentsigna-vuln.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# Tools are installed from a directory outside any module, with no GOFLAGS
# (a -mod=… there would break `go install pkg@version`).
tool_go() { (cd "$tmp" && GOFLAGS='' go "$@"); }

step "toolchain: $(go version)"
case "$(go version)" in *" $GO_TOOLCHAIN "*) ;; *) die "go is not $GO_TOOLCHAIN (is GOTOOLCHAIN honoured?)" ;; esac

# 1. govulncheck, pinned, built by the pinned toolchain, kept in .bin/.
want_scanner() {
	local info
	info="$(go version -m "$bin/govulncheck" 2>/dev/null)" || return 1
	[[ "${info%%$'\n'*}" == "$bin/govulncheck: $GO_TOOLCHAIN" ]] &&
		grep -qE "^[[:space:]]+mod[[:space:]]+golang.org/x/vuln[[:space:]]+${GOVULNCHECK_VERSION}[[:space:]]" <<<"$info"
}
if want_scanner; then
	step "govulncheck $GOVULNCHECK_VERSION ($GO_TOOLCHAIN) already in $bin"
else
	step "installing govulncheck $GOVULNCHECK_VERSION with $GO_TOOLCHAIN into $bin"
	mkdir -p "$bin"
	GOBIN="$bin" tool_go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
	want_scanner || die "installed govulncheck is not $GOVULNCHECK_VERSION built with $GO_TOOLCHAIN"
fi

# 2. The vulnerability database, built once per vulndb version and cached.
# A database is complete only when its .complete marker exists: it is built in
# a sibling temporary directory and renamed into place, so an interrupted run
# never leaves a half-written database behind.
if [[ -f "$db/.complete" && -f "$db/index/db.json" ]]; then
	step "vulndb $VULNDB_VERSION already built in $db"
else
	step "downloading golang.org/x/vulndb@$VULNDB_VERSION from the module proxy"
	meta="$(tool_go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")" ||
		die "go mod download golang.org/x/vulndb@$VULNDB_VERSION failed: $meta"
	src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$meta")"
	sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$meta")"
	[[ "$sum" == "$VULNDB_SUM" ]] || die "golang.org/x/vulndb@$VULNDB_VERSION has sum '$sum', pinned '$VULNDB_SUM'"
	[[ -d "$src/data/osv" ]] || die "no data/osv in $src"

	step "building golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"
	GOBIN="$tmp/bin" tool_go install "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"

	step "indexing $(find "$src/data/osv" -name '*.json' | wc -l | tr -d ' ') OSV entries into $db"
	mkdir -p "$cache_root"
	building="$(mktemp -d "$cache_root/.building.XXXXXX")"
	trap 'rm -rf "$tmp" "$building"' EXIT
	"$tmp/bin/indexdb" -vulns "$src/data/osv" -out "$building/db"
	printf '%s %s\n' "$VULNDB_VERSION" "$VULNDB_SUM" >"$building/db/.complete"
	rm -rf "$db"
	mv "$building/db" "$db"
fi

# 3. The scan. govulncheck exits 3 when it finds vulnerabilities (at the
# chosen -scan level), 0 when clean, anything else on error.
step "govulncheck -scan $scan -db file://$db ./... in $root"
rc=0
(cd "$root" && "$bin/govulncheck" -db "file://$db" -scan "$scan" ./...) || rc=$?
case "$rc" in
0) step "no known vulnerabilities (vulndb $VULNDB_VERSION)" ;;
3) step "FAILED: known vulnerabilities found (see above)" ;;
*) step "FAILED: govulncheck exited $rc" ;;
esac
exit "$rc"
