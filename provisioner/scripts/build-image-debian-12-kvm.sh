#!/usr/bin/env bash
# Builds the `debian-12-kvm` OS image for KVM machines from Debian's packages: a bookworm root
# filesystem made with mmdebstrap (installed with apt-get if missing) holding Debian's cloud
# kernel (`linux-image-cloud-amd64`) and its initramfs (initramfs-tools), cloud-init (first-boot
# configuration from the NoCloud `cidata` seed the provisioner attaches: hostname, SSH keys,
# root password hash, static address), OpenSSH and cloud-guest-utils (growpart: the root
# partition and filesystem grow into the disk the host made the plan's size).
#
# Out, cached outside the repository and keyed by this script's hash (like the other scripts):
#   ${VESSEL_IMAGE_CACHE:-/var/cache/vessel/images}/<hash>/debian-12-kvm/
#       disk.raw     partitioned raw disk (MBR, one ext4 partition labelled `root` from 1 MiB;
#                    sparse, 2 GiB): a machine's disk is a sparse copy grown to its plan's size
#       vmlinuz      the kernel (bzImage) and
#       initrd.img   its initramfs, extracted: the VMM (and QEMU) boot them directly with
#                    `root=/dev/vda1`; the image has no boot loader
#       image.json   the provisioner's image spec (provisioner/src/vm/runtime.rs `ImageSpec`)
# Prints that directory. Idempotent: a cached build is reused; one build at a time (flock).
#
#   build-image-debian-12-kvm.sh            build if needed, print the directory
#   build-image-debian-12-kvm.sh IMAGES     also link the image into IMAGES/debian-12-kvm
#   build-image-debian-12-kvm.sh --path     print the directory it would have (build nothing)
#
# What else is in it, and why:
#   * no SSH host keys and an empty machine-id: each machine makes its own on first boot
#     (cloud-init's ssh module; systemd);
#   * cloud-init looks only for NoCloud (then None): no waiting on metadata servers that a
#     Vessel host does not run;
#   * ifupdown: the network renderer cloud-init uses on bookworm for the seed's network-config,
#     and resolvconf, which puts the seed's name servers into /etc/resolv.conf (nothing of the
#     build host's resolver configuration stays in the image);
#   * /etc/fstab is written before the kernel is installed, so its initramfs carries e2fsck
#     and checks the root filesystem before mounting it;
#   * the locale is C.UTF-8 (built into glibc; cloud-init's default en_US.UTF-8 is not there);
#   * `net.ifnames=0`: the card is eth0, as the seed's network-config names it.
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
HASH="$(sha256sum "$SELF" | cut -c1-16)"
CACHE="${VESSEL_IMAGE_CACHE:-/var/cache/vessel/images}"
NAME=debian-12-kvm
SUITE=bookworm
OUT="$CACHE/$HASH/$NAME"
MIRROR="${VESSEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DISK_MIB=2048

done_() {
    if [[ -n "${1:-}" ]]; then
        mkdir -p "$1"
        rm -rf "$1/.$NAME.tmp"
        ln -sfn "$OUT" "$1/.$NAME.tmp"
        mv -Tf "$1/.$NAME.tmp" "$1/$NAME"
    fi
    echo "$OUT"
    exit 0
}
if [[ "${1:-}" == "--path" ]]; then
    echo "$OUT"
    exit 0
fi
DEST="${1:-}"
[[ -s "$OUT/image.json" ]] && done_ "$DEST"

[[ $(id -u) -eq 0 ]] || { echo "error: building the $NAME image needs root (mmdebstrap --mode=root)" >&2; exit 1; }
declare -A NEED=([mmdebstrap]=/usr/bin/mmdebstrap [e2fsprogs]=/sbin/mke2fs [fdisk]=/sbin/sfdisk)
missing=()
for pkg in "${!NEED[@]}"; do
    [[ -e "${NEED[$pkg]}" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "==> installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
[[ -s "$OUT/image.json" ]] && done_ "$DEST"

WORK="$CACHE/.build-$HASH"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
echo "==> building the $NAME image with mmdebstrap (several minutes on a fresh machine)" >&2
t0=$(date +%s)

nice -n 10 mmdebstrap \
    --mode=root --variant=minbase --format=directory \
    --include=systemd,systemd-sysv,udev,dbus,initramfs-tools,linux-image-cloud-amd64,cloud-init,cloud-guest-utils,fdisk,e2fsprogs,openssh-server,ifupdown,resolvconf,iproute2,iputils-ping,netbase,sudo,procps,less,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='rm -f "$1"/etc/hostname "$1"/var/lib/dbus/machine-id; : > "$1"/etc/machine-id' \
    --essential-hook='printf "%s\n" "LABEL=root / ext4 defaults,errors=remount-ro 0 1" > "$1"/etc/fstab' \
    --customize-hook='printf "%s\n" "auto lo" "iface lo inet loopback" "source /etc/network/interfaces.d/*" > "$1"/etc/network/interfaces' \
    --customize-hook='printf "%s\n" "# Vessel: the seed is a NoCloud cidata disk; nothing else to look for" "datasource_list: [NoCloud, None]" "locale: C.UTF-8" > "$1"/etc/cloud/cloud.cfg.d/90-vessel.cfg' \
    --customize-hook='printf "%s\n" "LANG=C.UTF-8" > "$1"/etc/default/locale' \
    --customize-hook='rm -rf "$1"/var/lib/cloud/*' \
    --customize-hook='cp -L "$1"/vmlinuz "$1"/../vmlinuz && cp -L "$1"/initrd.img "$1"/../initrd.img' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/log/*.log "$1"/var/log/apt/*' \
    "$SUITE" "$WORK/root" "$MIRROR" >&2

[[ -s "$WORK/vmlinuz" && -s "$WORK/initrd.img" ]] || { echo "error: no kernel or initramfs in the root filesystem" >&2; exit 1; }
# Whatever mmdebstrap left of the build host's resolver: the machine's comes from its seed.
rm -f "$WORK/root/etc/resolv.conf" "$WORK/root/etc/hostname"
ln -s ../run/resolvconf/resolv.conf "$WORK/root/etc/resolv.conf"

# The partitioned disk: the root filesystem copied in by mke2fs -d (no mount, no loop device).
truncate -s "${DISK_MIB}M" "$WORK/disk.raw"
echo 'label: dos
start=2048, type=83' | sfdisk --quiet --no-reread --no-tell-kernel "$WORK/disk.raw"
mke2fs -q -F -t ext4 -L root -d "$WORK/root" -E offset=1048576 "$WORK/disk.raw" "$((DISK_MIB - 1))M"

cat > "$WORK/image.json" <<J
{
  "kernel": "vmlinuz",
  "initrd": "initrd.img",
  "cmdline": "console=ttyS0 root=/dev/vda1 rw net.ifnames=0 panic=-1",
  "disk": {"image": "disk.raw"},
  "cloud_init": true
}
J
VERSION="12-$(date -u +%Y%m%d)"
echo "$VERSION $(basename "$(readlink -f "$WORK/root/vmlinuz")")" > "$WORK/version"
mkdir -p "$OUT"
for f in disk.raw vmlinuz initrd.img version image.json; do
    mv "$WORK/$f" "$OUT/$f"
done
echo "==> built $OUT ($(du -m "$OUT/disk.raw" | cut -f1) MiB used of ${DISK_MIB} MiB) in $(( $(date +%s) - t0 )) s" >&2
done_ "$DEST"
