"""The recipe assistant's logic, in plain Python (no Django import).

``text``       cleans a user message (markup, control characters, injection attempts).
``extract``    turns a message into an intent and slots (family, horizon, targets, ...).
``schedule``   turns "every Monday at 6" into a cron expression.
``proposal``   applies slots to a starting manifest, validating each change, and lists
               the follow-up questions still open.
``knowledge``  loads the versioned knowledge base (recipes/knowledge/*.md) and answers
               guidance questions from it.
``llm``        the optional OpenAI-compatible client: it only returns intent + slots, which
               go through the same proposal path as the built-in extractor's.

``recipes.chat`` is the Django side: conversations, choosing the starting recipe among the
stored ones, and creating the draft through ``recipes.services.recipe_clone``.
"""
