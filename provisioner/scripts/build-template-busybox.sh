#!/bin/sh
# Builds the minimal busybox OS template (rootfs tarball + manifest) into OUT_DIR.
# Uses Debian's busybox-static (installed with apt-get if missing). Idempotent and safe to run
# concurrently: the result is written to temporary names and renamed into place.
#   usage: build-template-busybox.sh OUT_DIR
set -eu
OUT=${1:?usage: $0 OUT_DIR}
NAME=busybox
mkdir -p "$OUT"
exec 9>"$OUT/.$NAME.lock"
flock 9
if [ -f "$OUT/$NAME.json" ] && [ -f "$OUT/$NAME.tar" ]; then exit 0; fi

BB=/bin/busybox
if ! [ -x "$BB" ] || ! file -L "$BB" 2>/dev/null | grep -q static; then
    if ! dpkg -s busybox-static >/dev/null 2>&1; then
        apt-get install -y busybox-static >/dev/null || { apt-get update && apt-get install -y busybox-static; }
    fi
fi
VERSION=$(dpkg-query -W -f '${Version}' busybox-static | tr -c 'A-Za-z0-9.\n_-' '_')

ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/bin "$ROOT"/sbin "$ROOT"/usr/bin "$ROOT"/usr/sbin "$ROOT"/etc "$ROOT"/proc \
    "$ROOT"/sys "$ROOT"/dev "$ROOT"/tmp "$ROOT"/root "$ROOT"/var/log "$ROOT"/run
chmod 1777 "$ROOT/tmp"
cp "$BB" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$ROOT/$(dirname "$applet")"
    ln -sf /bin/busybox "$ROOT/$applet"
done
cat > "$ROOT/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$ROOT/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
# The container's init: pid 1 of its pid namespace. It reaps orphans (the shell's wait does),
# runs /etc/rc.local if present, and on SIGTERM or SIGPWR (a graceful stop) asks every process
# to stop, then exits, which ends the container.
cat > "$ROOT/sbin/vessel-init" <<'I'
#!/bin/sh
stop() { kill -TERM -1 2>/dev/null; sleep 0.2; exit 0; }
trap stop TERM PWR INT
echo "vessel-init: $(hostname) up"
[ -x /etc/rc.local ] && /etc/rc.local &
while :; do sleep 3600 & wait $!; done
I
chmod 755 "$ROOT/sbin/vessel-init"

tar --numeric-owner -C "$ROOT" -cf "$OUT/.$NAME.tar.tmp" .
SHA=$(sha256sum "$OUT/.$NAME.tar.tmp" | cut -d' ' -f1)
mv "$OUT/.$NAME.tar.tmp" "$OUT/$NAME.tar"
cat > "$OUT/.$NAME.json.tmp" <<J
{"name":"$NAME","version":"$VERSION","init":["/sbin/vessel-init"],"sha256":"$SHA","tarball":"$NAME.tar"}
J
mv "$OUT/.$NAME.json.tmp" "$OUT/$NAME.json"
echo "built $OUT/$NAME.tar ($SHA)"
