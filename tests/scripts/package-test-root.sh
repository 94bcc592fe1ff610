#!/usr/bin/env bash
# The root file system the Debian package test (tests/tests/debian_packages.rs) boots with
# systemd-nspawn: the project's debian-12 container template (provisioner/scripts/
# build-template-debian-12.sh) plus, from Debian's archive, what the packages under test
# depend on and curl (the test's HTTP probe). Installing the dependencies ahead lets the test
# boot the container without a network and still `apt-get install ./vessel-*.deb` in it: apt
# then finds every dependency satisfied, and fails loudly if a package gained a new one.
#
#   package-test-root.sh TEMPLATE_DIR DEPENDS    prints the root directory (built if needed)
#
# DEPENDS is a Debian dependency list ("adduser, libc6 (>= 2.34), nftables"). Cached outside
# the repository, keyed by this script, the template and DEPENDS:
#   ${VESSEL_PACKAGE_TEST_CACHE:-/var/cache/vessel/package-test}/<hash>/root
# Other keys' roots are removed when a new one is built (one at a time: flock).
set -euo pipefail

TEMPLATE_DIR="$1"
DEPENDS="$2"
SELF="$(readlink -f "${BASH_SOURCE[0]}")"
TEMPLATE_SHA="$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$TEMPLATE_DIR/debian-12.json")"
[[ -n "$TEMPLATE_SHA" ]] || { echo "error: no sha256 in $TEMPLATE_DIR/debian-12.json" >&2; exit 1; }
HASH="$( (sha256sum "$SELF" | cut -d' ' -f1; echo "$TEMPLATE_SHA"; echo "$DEPENDS") | sha256sum | cut -c1-16)"
CACHE="${VESSEL_PACKAGE_TEST_CACHE:-/var/cache/vessel/package-test}"
OUT="$CACHE/$HASH"

[[ -f "$OUT/done" ]] && { echo "$OUT/root"; exit 0; }
[[ $(id -u) -eq 0 ]] || { echo "error: building the package test root needs root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "error: systemd-nspawn is missing: apt-get install systemd-container (scripts/ensure-test-deps)" >&2; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
[[ -f "$OUT/done" ]] && { echo "$OUT/root"; exit 0; }
for old in "$CACHE"/*/; do
    [[ "$old" == "$OUT/" ]] || rm -rf "$old"
done
rm -rf "$OUT"
mkdir -p "$OUT/root"
echo "==> building the package test root ($OUT) from the debian-12 template" >&2
tar --numeric-owner --xattrs -xf "$TEMPLATE_DIR/debian-12.tar" -C "$OUT/root"
# Not booted: nspawn runs apt-get in the root with the host's network and resolver.
nspawn() { systemd-nspawn --quiet --register=no --keep-unit --resolv-conf=copy-host -D "$OUT/root" "$@"; }
export DEBIAN_FRONTEND=noninteractive
nspawn apt-get update -qq >&2
nspawn apt-get satisfy -y -qq --no-install-recommends "$DEPENDS, curl, ca-certificates" >&2
nspawn apt-get clean >&2
rm -rf "$OUT/root/var/lib/apt/lists/"*
touch "$OUT/done"
echo "$OUT/root"
