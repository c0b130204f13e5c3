#!/usr/bin/env bash
# Prints the path of a promtool binary (Prometheus' rule checker), for the rule tests of
# roles/monitoring, or with `promtool.sh prometheus` of the Prometheus server binary, for the
# integration tests that start one on loopback (tests/harness/services.py). Both come from Debian's
# `prometheus` package, but installing that package would start a Prometheus daemon on this
# machine: the .deb is fetched with `apt-get download` instead, and only the binary asked for is
# extracted from it (dpkg-deb), into
#   $GR_STATE/promtool/<package version>/<binary>
# once per package version; later calls print the cached path at once. `apt-get update` runs only
# when the download fails for lack of package lists. Any failure: one error line, exit 1.
#   PROMTOOL=/path/to/promtool   use that binary instead (it must run).
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"

BIN=${1:-promtool}
case "$BIN" in
  promtool|prometheus) ;;
  *) die "usage: promtool.sh [promtool|prometheus] (got '$BIN')" ;;
esac

if [ "$BIN" = promtool ] && [ -n "${PROMTOOL:-}" ]; then
  "$PROMTOOL" --version >/dev/null 2>&1 || die "PROMTOOL=$PROMTOOL does not run (unset it to fetch promtool from Debian's prometheus package)"
  printf '%s\n' "$PROMTOOL"
  exit 0
fi

need_cmd apt-get "Debian's apt"
need_cmd apt-cache "Debian's apt"
need_cmd dpkg-deb "Debian's dpkg"
need_cmd flock "util-linux"

cache="$GR_STATE/promtool"
mkdir -p "$cache"
log="$cache/fetch.log"

candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2; exit}'; }

# One fetch at a time (pytest workers, a second checkout): the others wait, then find the cache.
exec 9>"$cache/.lock"
flock 9
: >"$log"

version=$(candidate)
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  # No package lists (a fresh container, a cleaned cache): read them once, then ask again.
  apt-get update -qq >>"$log" 2>&1 || die "apt-get update failed, cannot find the prometheus package (see $log)"
  version=$(candidate)
  case "$version" in ''|'(none)') die "no 'prometheus' package in the apt sources of this machine (Debian 12 main has it)" ;; esac
fi

dir="$cache/${version//[^A-Za-z0-9.+~-]/_}"
bin="$dir/$BIN"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  printf '%s\n' "$bin"
  exit 0
fi

work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
# _apt cannot write into a root-only temporary folder; let it, or apt warns and downloads as root.
chmod 755 "$work"

download() { (cd "$work" && apt-get download -q "prometheus=$version") >>"$log" 2>&1; }
if ! download; then
  if grep -qE "Unable to locate package|Can't select candidate|Version '.*' for 'prometheus' was not found|404" "$log"; then
    apt-get update -qq >>"$log" 2>&1 || die "apt-get update failed while fetching prometheus $version (see $log)"
    version=$(candidate)
    dir="$cache/${version//[^A-Za-z0-9.+~-]/_}"
    bin="$dir/$BIN"
    download || die "apt-get download prometheus=$version failed (see $log)"
  else
    die "apt-get download prometheus=$version failed (see $log)"
  fi
fi

deb=$(find "$work" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
[ -n "$deb" ] || die "apt-get download left no prometheus .deb in $work (see $log)"
# Only the one binary: the rest of the package (web assets, unit files) stays out of the cache.
mkdir -p "$work/root"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/root" "./usr/bin/$BIN" 2>>"$log" \
  || die "cannot extract usr/bin/$BIN from $(basename "$deb") (see $log)"
"$work/root/usr/bin/$BIN" --version >>"$log" 2>&1 \
  || die "the extracted $BIN does not run (see $log)"

mkdir -p "$dir"
mv -f "$work/root/usr/bin/$BIN" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
say "$BIN from prometheus $version cached in $dir"
printf '%s\n' "$bin"
