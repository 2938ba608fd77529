"""Serve plotly.min.js from inside the installed plotly wheel (no CDN, no copy in the repo).

Two names find the same file:

* ``plotly/plotly.min.js`` — the plain name (kept for anything that links it directly);
* ``plotly/plotly.min.<md5-12>.js`` — a ManifestStaticFilesStorage-style hashed name (the
  first 12 hex digits of the file's md5). Pages load this one (``plotly_static_path()``), so
  a browser or a proxy may cache the 4.8 MB bundle forever: a new plotly wheel gives a new
  name. The finder answers both in runserver and in the live-server tests; ``collectstatic``
  copies both.
"""

import hashlib
from functools import cache
from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"
PREFIX = "plotly"
FILENAME = "plotly.min.js"


@cache
def plotly_hashed_name() -> str:
    """``plotly.min.<md5-12>.js`` of the installed bundle (read once per process)."""
    digest = hashlib.md5((PLOTLY_DIR / FILENAME).read_bytes(), usedforsecurity=False).hexdigest()[:12]
    stem, ext = FILENAME.rsplit(".", 1)
    return f"{stem}.{digest}.{ext}"


def plotly_static_path() -> str:
    """The static path pages load plotly.js from (give it to ``{% static %}``)."""
    return f"{PREFIX}/{plotly_hashed_name()}"


class _PlotlyStorage(FileSystemStorage):
    """The wheel's folder, where the hashed name is an alias of plotly.min.js."""

    def path(self, name):
        return super().path(FILENAME if name == plotly_hashed_name() else name)


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = _PlotlyStorage(location=str(PLOTLY_DIR))
        self.storage.prefix = PREFIX

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path in (f"{PREFIX}/{FILENAME}", plotly_static_path()):
            match = str(PLOTLY_DIR / FILENAME)
            return [match] if find_all else match
        return []  # like Django's finders (None would be reported as a match)

    def list(self, ignore_patterns):
        yield FILENAME, self.storage
        yield plotly_hashed_name(), self.storage
