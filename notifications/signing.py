"""How a webhook delivery is signed, and how a receiver checks it. Pure: no Django.

The signed text is ``f"{timestamp}.{body}"``: the unix time (seconds) of the attempt, a dot and
the exact bytes of the request body. The signature is its HMAC-SHA256 under the webhook's
secret, sent as ``X-Workspace-Signature: sha256=<hex>`` next to ``X-Workspace-Timestamp``. A
receiver recomputes it with the secret, compares in constant time and rejects timestamps
older than a few minutes, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the X-Workspace-Signature header: ``sha256=<hex>``."""
    message = f"{int(timestamp)}.".encode() + body
    return PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: str | int, body: bytes, header: str, *, now: float, tolerance: float = 300
) -> bool:
    """Whether `header` signs `body` at `timestamp` with `secret`, and `timestamp` lies within
    `tolerance` seconds of `now` (unix seconds) — what a receiver should check."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - stamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, stamp, body), header or "")
