#!/usr/bin/env bash
# Proves the `debian-12-kvm` image and the provisioner's NoCloud seed together, under QEMU's
# software emulation (no /dev/kvm needed for the guest): builds the image if it is not cached
# (build-image-debian-12-kvm.sh), then runs provisioner/tests/vm_debian_qemu.rs, which makes a
# machine through the KVM runtime, boots it in `qemu-system-x86_64 -accel tcg`, logs in over
# SSH with the seed's key and checks hostname, address, password hash and the grown root.
# Not part of `./vessel test`: about 3-4 minutes of emulation on an idle 2-core machine (plus
# the image's first build). Installs qemu-system-x86 and openssh-client if missing (root).
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
declare -A NEED=([qemu-system-x86]=/usr/bin/qemu-system-x86_64 [openssh-client]=/usr/bin/ssh)
missing=()
for pkg in "${!NEED[@]}"; do
    [[ -e "${NEED[$pkg]}" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "error: needs: apt-get install ${missing[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$ROOT/provisioner/scripts/build-image-debian-12-kvm.sh" >/dev/null
cd "$ROOT"
exec cargo test -p provisioner --test vm_debian_qemu -- --ignored --nocapture
