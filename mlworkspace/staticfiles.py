"""Serve plotly.min.js from inside the installed plotly wheel as static/plotly/plotly.min.js."""

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"
PREFIX = "plotly"
FILENAME = "plotly.min.js"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=str(PLOTLY_DIR))
        self.storage.prefix = PREFIX

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == f"{PREFIX}/{FILENAME}":
            match = str(PLOTLY_DIR / FILENAME)
            return [match] if find_all else match
        return [] if find_all else None

    def list(self, ignore_patterns):
        yield FILENAME, self.storage
