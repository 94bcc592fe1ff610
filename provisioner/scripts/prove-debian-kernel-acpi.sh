#!/usr/bin/env bash
# Boots the `debian-12-kvm` image's own kernel in our VMM on this host and checks that it finds
# the devices of our ACPI DSDT (provisioner/tests/vm_debian_acpi.rs, #[ignore]d in the test
# command). Builds the image if it is not cached (build-image-debian-12-kvm.sh), then extracts
# the ELF vmlinux from its vmlinuz (an LZ4-compressed bzImage; booting the bzImage itself would
# run its decompressor under the host's emulation of guest kernel mode) into
# /var/cache/vessel/debian-vmlinux/<image version>/, and runs the test. Root; /dev/kvm. Tens of
# minutes on the nested PVM hosts (kernel mode emulated): ~8 min to `int3_selftest` alone.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
if ! command -v lz4 >/dev/null; then
    [[ $(id -u) -eq 0 ]] || { echo "error: needs: apt-get install lz4" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends lz4 >/dev/null
fi
IMAGE="$("$ROOT/provisioner/scripts/build-image-debian-12-kvm.sh" | tail -1)"
VERSION="$(tr ' /' '__' <"$IMAGE/version")"
OUT="${VESSEL_IMAGE_CACHE:-/var/cache/vessel}/debian-vmlinux/$VERSION"
if [[ ! -s "$OUT/vmlinux" ]]; then
    mkdir -p "$OUT"
    # The payload starts at LZ4's legacy frame magic (what the kernel's own extract-vmlinux looks for).
    offset="$(grep -obUaP '\x02\x21\x4c\x18' "$IMAGE/vmlinuz" | head -1 | cut -d: -f1)"
    [[ -n "$offset" ]] || { echo "error: no LZ4 payload in $IMAGE/vmlinuz" >&2; exit 1; }
    tail -c +"$((offset + 1))" "$IMAGE/vmlinuz" | lz4 -dc >"$OUT/vmlinux.tmp" 2>/dev/null || true
    readelf -n "$OUT/vmlinux.tmp" | grep -q 'Unknown note type: (0x00000012)' ||
        { echo "error: $OUT/vmlinux.tmp is not an ELF with a PVH entry note" >&2; exit 1; }
    mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
fi
cd "$ROOT"
export VESSEL_DEBIAN_VMLINUX="$OUT/vmlinux"
exec cargo test -p provisioner --test vm_debian_acpi -- --ignored --nocapture
