#!/usr/bin/env bash
# Builds the `debian-12` OS template: a Debian bookworm root filesystem from Debian's packages
# (mmdebstrap, installed with apt-get if missing) that boots systemd as pid 1 in a Vessel
# container and serves OpenSSH on port 22. Tarball + manifest, cached outside the repository
# and keyed by this script's hash (like scripts/build-test-kernel):
#   ${VESSEL_TEMPLATE_CACHE:-/var/cache/vessel/templates}/<hash>/{debian-12.json,debian-12.tar}
# Prints that directory (a `templates_dir` holding just this template). Idempotent: a cached
# build is reused; one build at a time per cache (flock).
#
#   build-template-debian-12.sh            build if needed, print the directory
#   build-template-debian-12.sh OUT_DIR    also link (or copy) the two files into OUT_DIR
#   build-template-debian-12.sh --path     print the directory it would have (build nothing)
#
# What is in it, and why (see provisioner/README.md, "The debian-12 template"):
#   * systemd + systemd-sysv (/sbin/init), dbus (logind and `systemctl` over the bus), journald;
#   * openssh-server, sudo, iproute2, iputils-ping, procps (free, top), less, ca-certificates;
#   * no SSH host keys: each container makes its own on first boot (vessel-ssh-host-keys.service);
#   * no machine-id: systemd makes one per container on first boot;
#   * no /etc/hostname: the host sets the container's hostname (its uts namespace) at start;
#   * root may log in with a password when the customer chose one (sshd_config.d/vessel.conf);
#   * units that cannot work without the host's powers are masked (list below, with reasons).
# The network, /etc/resolv.conf, the root password hash and SSH keys come from the host
# (provisioner/src/container/{init,access}.rs), not from here.
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
HASH="$(sha256sum "$SELF" | cut -c1-16)"
CACHE="${VESSEL_TEMPLATE_CACHE:-/var/cache/vessel/templates}"
OUT="$CACHE/$HASH"
NAME=debian-12
SUITE=bookworm
MIRROR="${VESSEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

link_into() {
    local dest="$1"
    mkdir -p "$dest"
    for f in "$NAME.tar" "$NAME.json"; do
        [[ "$OUT/$f" -ef "$dest/$f" ]] && continue
        ln -f "$OUT/$f" "$dest/.$f.tmp" 2>/dev/null || cp "$OUT/$f" "$dest/.$f.tmp"
        mv -f "$dest/.$f.tmp" "$dest/$f"
    done
}
done_() {
    [[ -n "${1:-}" ]] && link_into "$1"
    echo "$OUT"
    exit 0
}

if [[ "${1:-}" == "--path" ]]; then
    echo "$OUT"
    exit 0
fi
DEST="${1:-}"
if [[ -s "$OUT/$NAME.json" && -s "$OUT/$NAME.tar" ]]; then
    done_ "$DEST"
fi

if ! command -v mmdebstrap >/dev/null; then
    [[ $(id -u) -eq 0 ]] || { echo "error: building the debian-12 template needs: apt-get install mmdebstrap" >&2; exit 1; }
    echo "==> installing mmdebstrap" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
fi
[[ $(id -u) -eq 0 ]] || { echo "error: building the debian-12 template needs root (mmdebstrap --mode=root)" >&2; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ -s "$OUT/$NAME.json" && -s "$OUT/$NAME.tar" ]]; then
    done_ "$DEST"
fi

WORK="$CACHE/.build-$HASH"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
echo "==> building the $NAME template with mmdebstrap (a few minutes on a fresh machine)" >&2
t0=$(date +%s)

# Units masked, and why:
#   systemd-logind: needs to mount each user's /run/user/<uid> (CAP_SYS_ADMIN, which a container
#     does not hold); no PAM module asks for it here (libpam-systemd is not installed)
#   getty@tty1, console-getty: the container has no ttys of its own; the host's console relay
#     runs a shell through `provisioner ct exec` instead
#   systemd-networkd-wait-online, systemd-timesyncd: the host configures the network and the clock
#   apt-daily(-upgrade).timer: no surprise downloads against a customer's plan; they run it themselves
#   e2scrub_all.timer, fstrim.timer: the disk is the host's business
MASK="getty@tty1.service console-getty.service systemd-networkd-wait-online.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer"

nice -n 10 mmdebstrap \
    --mode=root --variant=minbase --format=directory \
    --include=systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,iputils-ping,procps,less,ca-certificates,netbase \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='rm -f "$1"/etc/hostname "$1"/var/lib/dbus/machine-id; : > "$1"/etc/machine-id' \
    --customize-hook='for u in '"$MASK"'; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done' \
    --customize-hook='mkdir -p "$1"/etc/ssh/sshd_config.d && printf "%s\n" "# Vessel: the customer may choose a root password at order or reset time" "PermitRootLogin yes" > "$1"/etc/ssh/sshd_config.d/vessel.conf' \
    --customize-hook='cat > "$1"/etc/systemd/system/vessel-ssh-host-keys.service <<EOF
[Unit]
Description=SSH host keys of this container (made once, on its first boot)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
EOF
ln -sf /etc/systemd/system/vessel-ssh-host-keys.service "$1"/etc/systemd/system/multi-user.target.wants/vessel-ssh-host-keys.service' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/*' \
    "$SUITE" "$WORK/root" "$MIRROR" >&2

VERSION="12-$(date -u +%Y%m%d)"
tar --numeric-owner --xattrs -C "$WORK/root" -cf "$WORK/$NAME.tar" .
SHA=$(sha256sum "$WORK/$NAME.tar" | cut -d' ' -f1)
cat > "$WORK/$NAME.json" <<J
{"name":"$NAME","version":"$VERSION","init":["/lib/systemd/systemd"],"boot":"systemd","sha256":"$SHA","tarball":"$NAME.tar"}
J
mkdir -p "$OUT"
mv "$WORK/$NAME.tar" "$OUT/$NAME.tar"
mv "$WORK/$NAME.json" "$OUT/$NAME.json"
echo "==> built $OUT/$NAME.tar ($(du -m "$OUT/$NAME.tar" | cut -f1) MiB) in $(( $(date +%s) - t0 )) s" >&2
done_ "$DEST"
