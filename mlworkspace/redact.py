"""Server paths out of the messages users see.

Exceptions from pandas, pyarrow, open() and friends name the absolute path of the file they
failed on ("Could not open Parquet input source '/srv/ws/media/datasets/ds_….parquet'"), and
tracebacks name the code's and the interpreter's folders. Such text reaches users as a 400's
message (every ``DomainError`` is redacted as it is made, see ``mlworkspace.errors``) or a
run's error and log (``runs.pipeline.child_main`` redacts what the run's process reports).
A path under one of the server's folders is cut to its last component: the file name the
user can recognise (their dataset, an artifact) and nothing about the server's layout.

Plain Python with no Django import: the pure pipeline uses it.
"""

from __future__ import annotations

import functools
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Characters that end a path inside a message: spaces, quotes, brackets, separators.
_PATH_TAIL = r"(?P<tail>/[^\s'\"`<>()\[\]{},;|]*)?"


@functools.lru_cache(maxsize=16)
def default_roots(*extra) -> tuple[str, ...]:
    """The folders whose paths are never shown: the project, the interpreter and its
    packages and the temporary folder, plus `extra` (e.g. MEDIA_ROOT). (Not the home folder:
    "/root" would also match a JSON pointer such as "/root/depth" in a message.)"""
    candidates = [PROJECT_ROOT, sys.prefix, sys.base_prefix, sys.exec_prefix, tempfile.gettempdir(), *extra]
    roots = set()
    for candidate in candidates:
        if not candidate:
            continue
        for form in (Path(candidate), Path(candidate).resolve()):
            text = str(form).rstrip("/")
            if len(text) > 1:  # never "/" itself
                roots.add(text)
    return tuple(sorted(roots, key=len, reverse=True))


@functools.lru_cache(maxsize=32)
def _pattern(roots: tuple[str, ...]) -> re.Pattern | None:
    if not roots:
        return None
    alternatives = "|".join(re.escape(root) for root in roots)
    # A root followed by a path separator or the end of the path (not "/tmpfoo").
    return re.compile(rf"(?:{alternatives})(?=[/\s'\"`<>()\[\]{{}},;:|]|$){_PATH_TAIL}")


def _short(match: re.Match) -> str:
    tail = (match.group("tail") or "").rstrip("/")
    return tail.rsplit("/", 1)[-1] if tail else "<server folder>"


def redact_paths(text: str, roots: Iterable[str] | None = None) -> str:
    """`text` with every absolute path under `roots` (default: ``default_roots()``) cut to
    its file name; text without such a path is returned unchanged."""
    if not text or "/" not in text:
        return text
    roots = tuple(roots) if roots is not None else default_roots()
    pattern = _pattern(roots)
    if pattern is None:
        return text
    return pattern.sub(_short, text)
