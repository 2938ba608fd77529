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
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db.models import F
from django.utils import timezone

from . import events as ev
from . import signing
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


def _opener() -> urllib.request.OpenerDirector:
    """http and https only; no redirect handling (a 3xx is an answer, not followed), no proxy
    from the environment, no file:/ftp:/data: handlers."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST `body`: (status code, "") on any HTTP answer, (None, the error in one line) when
    there was none."""
    if not url.lower().startswith(("http://", "https://")):
        return None, "not an http(s) URL"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        response = _opener().open(request, timeout=timeout)
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
    code, error = post(
        webhook.url,
        body,
        headers_for(delivery, webhook.secret, timestamp, body),
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
    )
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
