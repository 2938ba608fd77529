"""Reading a chat message, in plain Python (no Django, no DRF).

``text``      cleans a user message (markup, control characters, injection attempts).
``extract``   turns a message into an intent and slots (family, horizon, targets, ...).
``schedule``  turns "every Monday at 6" into a cron expression.
"""
