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
# The container's init. Not systemd: it needs CAP_SYS_ADMIN and a delegated cgroup, which a
# Vessel container does not get. This one runs rc.local, starts sshd, reaps orphans, and on
# SIGTERM/SIGPWR (a graceful stop) asks every process to stop, then exits.
cat > "$ROOT/sbin/vessel-init" <<'I'
#!/bin/sh
stop() { kill -TERM -1 2>/dev/null; sleep 1; exit 0; }
trap stop TERM PWR INT
echo "vessel-init: $(hostname) up"
[ -x /etc/rc.local ] && /etc/rc.local &
if [ -x /usr/sbin/sshd ]; then mkdir -p /run/sshd; ssh-keygen -A >/dev/null 2>&1; /usr/sbin/sshd; fi
while :; do sleep 3600 & wait $!; done
I
chmod 755 "$ROOT/sbin/vessel-init"
VERSION=$(date -u +%Y%m%d)
tar --numeric-owner -C "$ROOT" -cf "$OUT/.$NAME.tar.tmp" .
SHA=$(sha256sum "$OUT/.$NAME.tar.tmp" | cut -d' ' -f1)
mv "$OUT/.$NAME.tar.tmp" "$OUT/$NAME.tar"
cat > "$OUT/.$NAME.json.tmp" <<J
{"name":"$NAME","version":"$VERSION","init":["/sbin/vessel-init"],"sha256":"$SHA","tarball":"$NAME.tar"}
J
mv "$OUT/.$NAME.json.tmp" "$OUT/$NAME.json"
echo "built $OUT/$NAME.tar ($SHA)"
