"""The events a notification can be about: the one list (webhooks, e-mail subscriptions, the
API's validation and the page's check boxes all read it). Pure: no Django.

Each event is sent by the app that owns what happened, through
``notifications.services.notify(event, recipe=..., payload=...)``; ``test`` only by a webhook's
"Send test" button."""

from __future__ import annotations

ALERT_OPENED = "alert.opened"
ALERT_RESOLVED = "alert.resolved"
RETRAIN_DECIDED = "retrain.decided"
COMPARISON_VERDICT = "comparison.verdict"
MODEL_STATUS = "model.status"
EXPERIMENT_RESULT = "experiment.result"
TEST = "test"

# name -> what it means (the page shows it next to the check box).
EVENTS: dict[str, str] = {
    ALERT_OPENED: "An alert rule of a model started firing",
    ALERT_RESOLVED: "A firing alert stopped firing",
    RETRAIN_DECIDED: "A retrain was decided: the challenger promoted or the champion kept, and why",
    COMPARISON_VERDICT: "A champion–challenger comparison reached its verdict",
    MODEL_STATUS: "A model moved in its lifecycle (staging, production, archived)",
    EXPERIMENT_RESULT: "An A/B or shadow experiment ended with a result",
    TEST: "A test delivery (the Send test button)",
}
# What a webhook or e-mail subscription may list (an empty list means all of them); `test`
# is sent to one webhook on request, whatever it lists.
SUBSCRIBABLE: tuple[str, ...] = tuple(name for name in EVENTS if name != TEST)


def clean_events(value) -> list[str]:
    """`value` as a list of known, subscribable event names without duplicates (in the order
    given); ValueError with a message naming the first bad item otherwise."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of event names")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in SUBSCRIBABLE:
            shown = item[:60] if isinstance(item, str) else type(item).__name__
            raise ValueError(f"unknown event '{shown}'; one of: {', '.join(SUBSCRIBABLE)}")
        if item not in out:
            out.append(item)
    return out


def wants(events: list[str] | None, event: str) -> bool:
    """Whether a webhook or subscription listing `events` gets `event` (empty: every event)."""
    return not events or event in events
