"""The signature scheme (pure): what the README tells a receiver to do."""

import hashlib
import hmac

from notifications import events, signing


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"event":"test"}'
    expected = hmac.new(b"whsec_k", b'1767600000.{"event":"test"}', hashlib.sha256).hexdigest()
    assert signing.signature("whsec_k", 1767600000, body) == f"sha256={expected}"


def test_verify_rejects_wrong_secret_body_old_or_garbled_timestamps():
    body = b"{}"
    header = signing.signature("s", 1000, body)
    assert signing.verify("s", "1000", body, header, now=1100)
    assert not signing.verify("t", "1000", body, header, now=1100)
    assert not signing.verify("s", "1000", b"{ }", header, now=1100)
    assert not signing.verify("s", "1000", body, header, now=1000 + 301)
    assert not signing.verify("s", "soon", body, header, now=1000)
    assert not signing.verify("s", "1000", body, "", now=1000)


def test_the_events_list():
    assert events.SUBSCRIBABLE == (
        "alert.opened",
        "alert.resolved",
        "retrain.decided",
        "comparison.verdict",
        "model.status",
        "experiment.result",
    )
    assert events.clean_events(["model.status", "alert.opened", "model.status"]) == [
        "model.status",
        "alert.opened",
    ]
    assert events.wants([], "alert.opened") and not events.wants(["model.status"], "alert.opened")
