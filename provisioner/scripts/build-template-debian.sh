#!/bin/sh
# Builds a Debian OS template (rootfs tarball + manifest) into OUT_DIR with debootstrap
# (installed with apt-get if missing). Takes minutes and needs the network; tests do not run it.
#   usage: build-template-debian.sh OUT_DIR [SUITE] [MIRROR]
set -eu
OUT=${1:?usage: $0 OUT_DIR [SUITE] [MIRROR]}
SUITE=${2:-bookworm}
MIRROR=${3:-http://deb.debian.org/debian}
NAME=debian-$SUITE
mkdir -p "$OUT"
command -v debootstrap >/dev/null || apt-get install -y debootstrap
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=iproute2,procps,ifupdown,openssh-server "$SUITE" "$ROOT" "$MIRROR"
# No udev, no getty on real ttys inside a container; the network is configured by the host.
rm -f "$ROOT/etc/hostname"
printf 'auto lo\niface lo inet loopback\n' > "$ROOT/etc/network/interfaces"
chroot "$ROOT" apt-get clean
VERSION=$(date -u +%Y%m%d)
tar --numeric-owner -C "$ROOT" -cf "$OUT/.$NAME.tar.tmp" .
SHA=$(sha256sum "$OUT/.$NAME.tar.tmp" | cut -d' ' -f1)
mv "$OUT/.$NAME.tar.tmp" "$OUT/$NAME.tar"
cat > "$OUT/.$NAME.json.tmp" <<J
{"name":"$NAME","version":"$VERSION","init":["/sbin/init"],"sha256":"$SHA","tarball":"$NAME.tar"}
J
mv "$OUT/.$NAME.json.tmp" "$OUT/$NAME.json"
echo "built $OUT/$NAME.tar ($SHA)"
