"""Which addresses a webhook may reach: public ones only, unless the operator allows more.

A webhook's URL is typed by a user, and a worker inside the workspace's network POSTs to it:
pointed at 127.0.0.1, 10.x, the database host or 169.254.169.254 (cloud metadata), that is a
server-side request forgery. So an address is refused when it is loopback, private, link-local,
multicast, reserved, unspecified or otherwise not globally routable (an IPv4-mapped IPv6
address is judged as its IPv4 address), unless WEBHOOK_ALLOW_PRIVATE is set or the URL's host
is one of WEBHOOK_ALLOWED_HOSTS (exact names).

Two callers, one rule: notifications.services.clean_url refuses an IP literal when a webhook is
saved (a host name is not resolved then: its DNS can change), and notifications.delivery
resolves the host before each attempt and connects only to the addresses it checked here.
"""

from __future__ import annotations

import ipaddress
import socket

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTINGS_HINT = "set WEBHOOK_ALLOW_PRIVATE or WEBHOOK_ALLOWED_HOSTS"


def kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address ("loopback", "private", ...), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 reaches 10.0.0.5
    # The order matters: 127.0.0.1, 169.254.x and 240.x are also is_private; the specific word helps.
    for name, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return name
    # What is left and still not global: e.g. 100.64.0.0/10, the carrier-grade NAT range.
    return None if ip.is_global else "non-public"


def described(ip: IPAddress) -> str | None:
    """What a refused address is, e.g. "10.0.0.5, a private address"; None for a public one."""
    why = kind(ip)
    if why is None:
        return None
    article = "an" if why[0] in "aeiou" else "a"
    return f"{ip}, {article} {why} address"


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` (a URL's host name, without brackets) spells, or None for a name.

    Besides the usual forms this reads what the C resolver also takes as an IPv4 address
    (2130706433, 127.1, 0x7f.0.0.1), so such a spelling cannot pass as a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".")


def exempt(host: str) -> bool:
    """Whether the operator lets webhooks to `host` reach any address (the settings)."""
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return True
    return _normal(host) in {_normal(h) for h in settings.WEBHOOK_ALLOWED_HOSTS}
