"""Sending webhook deliveries and notification e-mails: what the workers run.

Two paths send a delivery: the task enqueued when it was created (notifications.tasks: prompt
when a worker is idle) and the workers' housekeeping tick (``deliver_due``: the retries, and
any delivery whose task has not run yet — a worker busy with a long training run, a lost
task). Both go through ``attempt``, which first **claims** the attempt with a conditional
update (the row must still be open, due and at the attempt count it was read with), so two
workers never send one attempt twice. The claim also moves next_attempt_at a lease ahead:
if the worker dies mid-request, the delivery is due again after the lease, not lost.

An attempt POSTs the JSON document of ``body_of`` with the headers of ``headers_for``, signed
as notifications.signing says. A 2xx answer is delivered; anything else (another status, a
redirect, a refused connection, a timeout) is retried after WEBHOOK_BACKOFF_SECONDS × 2^(n-1)
until WEBHOOK_MAX_ATTEMPTS, then failed — the log keeps the last status code and error.
Redirects are never followed and only http(s) URLs are ever opened (no file:, ftp:, data:).

Before each attempt the URL's host is resolved and every address it resolves to is checked
(notifications.addresses): if any is not public — loopback, private, link-local (cloud
metadata), ... — and the operator did not allow it (WEBHOOK_ALLOW_PRIVATE,
WEBHOOK_ALLOWED_HOSTS), nothing is sent and the delivery fails at once (it would be refused
again). Otherwise the request connects to the addresses that were checked, not to a second
lookup of the name, so a DNS answer that changes in between (rebinding) cannot redirect it;
TLS still verifies the certificate against the host name (SNI, hostname check).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db.models import F
from django.utils import timezone

from . import addresses, signing
from . import events as ev
from .models import OPEN_STATUSES, Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

USER_AGENT = "mlworkspace-webhooks/1.0"
# Of an answer only the status matters: at most this much of its body is read (and dropped).
MAX_RESPONSE_BYTES = 64 * 1024
# One housekeeping tick sends at most this many deliveries and starts none after this many
# seconds, so endpoints that time out cannot hold up the tick's other steps for long.
TICK_LIMIT = 200
TICK_BUDGET_SECONDS = 20.0
ERROR_MAX_CHARS = 300


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def body_of(delivery: Delivery) -> bytes:
    """The request body: the exact bytes that are signed."""
    document = {
        "event": delivery.event,
        "id": delivery.pk,
        "created_at": iso(delivery.created_at),
        "recipe_id": delivery.recipe_id,
        "client_id": delivery.client_id,
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def headers_for(delivery: Delivery, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Workspace-Event": delivery.event,
        "X-Workspace-Delivery": delivery.pk,
        "X-Workspace-Timestamp": str(timestamp),
        "X-Workspace-Signature": signing.signature(secret, timestamp, body),
    }


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`-th failed attempt a delivery is tried again."""
    return timedelta(seconds=settings.WEBHOOK_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0))


def lease() -> timedelta:
    """How long a claimed attempt keeps other workers off the delivery."""
    return timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_SECONDS + 60)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:ERROR_MAX_CHARS]


class Refused(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach: nothing was sent,
    and a retry would be refused again."""


AddrInfo = tuple  # one entry of socket.getaddrinfo: (family, type, proto, canonname, sockaddr)


def resolve(url: str) -> list[AddrInfo]:
    """The addresses to connect to for `url`, each checked by notifications.addresses: Refused
    when one is not public (unless the settings allow it); OSError when the name does not
    resolve (retried: DNS failures pass)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if addresses.exempt(host):
        return infos
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        refused = addresses.described(ip)
        if refused:
            said = refused if str(ip) == host else f"{host} resolves to {refused}"
            raise Refused(f"refused: {said}; {addresses.SETTINGS_HINT}")
    return infos


def _connect_to(infos: list[AddrInfo], address, timeout=None, source_address=None) -> socket.socket:
    """http.client's connection factory, pinned: it connects to the checked addresses in turn
    (as socket.create_connection does) and ignores `address`, whose name would be looked up
    again."""
    error: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if isinstance(timeout, int | float):  # else http.client's "no timeout given" marker
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError(f"no address to connect to for {address[0]}")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    # HTTPConnection.connect() (and HTTPSConnection's, before it wraps the socket in TLS with
    # server_hostname=self.host) opens its socket through self._create_connection.
    def __init__(self, *args, infos: list[AddrInfo], **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = partial(_connect_to, infos)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, infos: list[AddrInfo], **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = partial(_connect_to, infos)


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, infos: list[AddrInfo]):
        super().__init__()
        self.infos = infos

    def http_open(self, req):
        return self.do_open(partial(_PinnedHTTPConnection, infos=self.infos), req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, infos: list[AddrInfo]):
        super().__init__(context=ssl.create_default_context())
        self.infos = infos

    def https_open(self, req):
        return self.do_open(partial(_PinnedHTTPSConnection, infos=self.infos), req, context=self._context)


def _opener(infos: list[AddrInfo]) -> urllib.request.OpenerDirector:
    """http and https only, to the checked addresses `infos`; no redirect handling (a 3xx is an
    answer, not followed), no proxy from the environment, no file:/ftp:/data: handlers."""
    opener = urllib.request.OpenerDirector()
    for handler in (_PinnedHTTPHandler(infos), _PinnedHTTPSHandler(infos), urllib.request.UnknownHandler()):
        opener.add_handler(handler)
    return opener


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST `body`: (status code, "") on any HTTP answer, (None, the error in one line) when
    there was none. Raises Refused, before any connection, when the host is not public."""
    if not url.lower().startswith(("http://", "https://")):
        return None, "not an http(s) URL"
    try:
        infos = resolve(url)
    except (OSError, ValueError) as exc:  # gaierror is an OSError; an unencodable name a ValueError
        return None, _one_line(f"connection failed: {exc}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        response = _opener(infos).open(request, timeout=timeout)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return None, f"timed out after {timeout:g} s"
        return None, _one_line(f"connection failed: {reason}")
    except TimeoutError:
        return None, f"timed out after {timeout:g} s (waiting for the answer)"
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return None, _one_line(f"{type(exc).__name__}: {exc}")
    try:
        try:
            response.read(MAX_RESPONSE_BYTES)
        except (http.client.HTTPException, OSError):
            pass  # the status is what counts
        return response.status, ""
    finally:
        response.close()


def claim(delivery: Delivery, now: datetime) -> bool:
    """Take the next attempt of `delivery` as read: False if it is not due or another worker
    took it (or it changed) since."""
    return bool(
        Delivery.objects.filter(
            pk=delivery.pk,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at__lte=now,
        ).update(attempts=F("attempts") + 1, last_attempt_at=now, next_attempt_at=now + lease())
    )


def _record(
    delivery: Delivery, attempts: int, now: datetime, *, code: int | None, error: str, final: bool = False
) -> str:
    if code is not None and 200 <= code < 300:
        fields = {
            "status": DeliveryStatus.DELIVERED,
            "delivered_at": now,
            "next_attempt_at": None,
            "error": "",
        }
    elif final or attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        fields = {"status": DeliveryStatus.FAILED, "next_attempt_at": None, "error": error}
    else:
        fields = {
            "status": DeliveryStatus.RETRYING,
            "next_attempt_at": now + backoff(attempts),
            "error": error,
        }
    # Only while the attempt is still ours (a worker that outlived its lease loses the write).
    Delivery.objects.filter(pk=delivery.pk, attempts=attempts).update(response_code=code, **fields)
    return fields["status"]


def attempt(delivery: Delivery, *, now: datetime | None = None) -> str | None:
    """One attempt at `delivery` (its webhook loaded): its new status, or None when it was not
    ours to send (not due, no longer open, claimed by another worker)."""
    now = now or timezone.now()
    if delivery.status not in OPEN_STATUSES or not claim(delivery, now):
        return None
    attempts = delivery.attempts + 1
    webhook = delivery.webhook
    if not webhook.active and delivery.event != ev.TEST:
        return _record(
            delivery, attempts, now, code=None, error="not sent: the webhook was deactivated", final=True
        )
    timestamp = int(now.timestamp())
    body = body_of(delivery)
    try:
        code, error = post(
            webhook.url,
            body,
            headers_for(delivery, webhook.secret, timestamp, body),
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
    except Refused as exc:
        status = _record(delivery, attempts, now, code=None, error=_one_line(str(exc)), final=True)
        logger.warning("webhook delivery %s attempt %s: %s (%s)", delivery.pk, attempts, exc, status)
        return status
    if code is not None and not 200 <= code < 300:
        error = f"HTTP {code}"
    status = _record(delivery, attempts, now, code=code, error=error)
    if status != DeliveryStatus.DELIVERED:
        # The delivery's id and the error only: never the secret or the signature.
        logger.warning("webhook delivery %s attempt %s: %s (%s)", delivery.pk, attempts, error, status)
    return status


def deliver(delivery_id: str, *, now: datetime | None = None) -> str | None:
    """Attempt the delivery `delivery_id` if it is due (the task's body)."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return None
    return attempt(delivery, now=now)


def deliver_due(now: datetime | None = None, *, limit: int = TICK_LIMIT) -> int:
    """Attempt every open delivery whose next attempt is due (the workers' tick): how many
    attempts were made. `now` fixes the clock (tests); by default each attempt is at its own
    time."""
    started = time.monotonic()
    due = list(
        Delivery.objects.filter(status__in=OPEN_STATUSES, next_attempt_at__lte=now or timezone.now())
        .select_related("webhook")
        .order_by("next_attempt_at", "id")[:limit]
    )
    made = 0
    for delivery in due:
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            break  # the rest on the next tick
        try:
            if attempt(delivery, now=now) is not None:
                made += 1
        except Exception:  # one bad delivery must not hold up the others; its lease expires
            logger.exception("webhook delivery %s: the attempt failed unexpectedly", delivery.pk)
    return made


def send_emails(subject: str, body: str, recipients: list[str]) -> int:
    """One message per recipient (they do not see each other's addresses), through Django's
    default mailer (settings.MAILERS); how many were sent. Failures are logged, not raised."""
    messages = [(subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in recipients]
    try:
        return send_mass_mail(messages, using="default")
    except Exception:  # e-mail is best effort: the worker goes on
        logger.exception(
            "sending the notification e-mail %r to %d recipients failed", subject, len(recipients)
        )
        return 0
