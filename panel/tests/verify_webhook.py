#!/usr/bin/env python3
"""Reference verifier for Vessel webhook signatures, written from the documented scheme only
(panel/README.md, "Webhooks"), with the standard library: the test suite runs it against what
the panel really sent.

    verify_webhook.py SECRET SIGNATURE_HEADER BODY_FILE [NOW_UNIX_SECONDS]

Exit 0 and print "ok" when the signature holds and its timestamp is within five minutes of
now; exit 1 with the reason otherwise; exit 2 on bad usage.
"""
import hashlib
import hmac
import sys
import time

TOLERANCE_SECONDS = 300


def verify(secret: str, header: str, body: bytes, now: int) -> None:
    fields = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed signature header part {part!r}")
        fields.setdefault(key, []).append(value)
    if "t" not in fields or len(fields["t"]) != 1 or not fields["t"][0].isdigit():
        raise ValueError("the header has no single numeric t=")
    t = int(fields["t"][0])
    candidates = fields.get("v1", [])
    if not candidates:
        raise ValueError("the header has no v1= signature")
    if abs(now - t) > TOLERANCE_SECONDS:
        raise ValueError(f"timestamp {t} is more than {TOLERANCE_SECONDS} s from now ({now})")
    expected = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise ValueError("no v1 signature matches the body")


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    secret, header, body_file = argv[1], argv[2], argv[3]
    now = int(argv[4]) if len(argv) == 5 else int(time.time())
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        verify(secret, header, body, now)
    except ValueError as e:
        print(f"rejected: {e}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
