"""The project's JSONField: NaN and Infinity can never reach a JSON column.

Python's json writes NaN/Infinity as bare tokens that are not JSON: PostgreSQL refuses them
(a header-only CSV upload's NaN null ratio was a 500) and SQLite keeps text no other JSON
reader takes. Rather than cleaning values at each call site, every JSON column of the
project's models is this field, whose encoder writes non-finite floats as null and numpy
scalars/arrays as plain numbers and lists. A system check (``mlworkspace.E020``) fails on any
models.JSONField of the project's apps without that encoder.

The encoder changes how Python values are written, not the column: ``deconstruct`` reports
the field as a plain ``models.JSONField``, so the existing migrations stay valid and adopting
the field needs no migration.
"""

from __future__ import annotations

import math
from pathlib import Path

from django import forms
from django.conf import settings
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .jsondepth import message as depth_message
from .jsondepth import too_deep_in_text


def finite(value):
    """`value` with NaN/Infinity (Python or numpy floats) replaced by None, in dicts, lists
    and tuples at any depth; other values unchanged."""
    if isinstance(value, float):  # numpy.float64 is a float subclass
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):  # numpy scalars and arrays -> Python values, then clean
            return finite(value.tolist())
    return value


class SafeJSONEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder (dates, decimals, UUIDs) that never writes NaN or Infinity: they
    become null. Also numpy scalars and arrays (metrics computed with numpy)."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_nan"] = False  # json.dumps passes allow_nan=True explicitly
        super().__init__(*args, **kwargs)

    def encode(self, o):
        # (json.dumps, which Django's backends call, goes through encode; json.dump would not.)
        try:
            # Fast path: almost every value is finite, and is encoded without a copy.
            return super().encode(o)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
        return super().encode(finite(o))

    def default(self, o):
        if type(o).__module__ == "numpy" and hasattr(o, "tolist"):
            return finite(o.tolist())
        if type(o).__name__ == "NaTType":  # pandas' missing timestamp
            return None
        return super().default(o)


class JSONFormField(forms.JSONField):
    """The admin's JSON form field, refusing text nested deeper than JSON_MAX_DEPTH before
    parsing it (json.loads would recurse past Python's limit: a 500)."""

    def to_python(self, value):
        if isinstance(value, str):
            where = too_deep_in_text(value, settings.JSON_MAX_DEPTH)
            if where is not None:
                raise ValidationError(
                    f"Too deeply nested at {where}: {depth_message(settings.JSON_MAX_DEPTH)}",
                    code="too_deep",
                )
        return super().to_python(value)


class JSONField(models.JSONField):
    """models.JSONField with SafeJSONEncoder (see the module docstring)."""

    def __init__(self, *args, encoder=None, **kwargs):
        super().__init__(*args, encoder=encoder or SafeJSONEncoder, **kwargs)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        if kwargs.get("encoder") is SafeJSONEncoder:
            del kwargs["encoder"]
        return name, "django.db.models.JSONField", args, kwargs

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": JSONFormField, **kwargs})


def _project_apps(app_configs):
    from django.apps import apps

    root = Path(settings.BASE_DIR).resolve()
    for config in app_configs or apps.get_app_configs():
        path = Path(config.path).resolve()
        if root in path.parents and ".venv" not in path.parts and "site-packages" not in path.parts:
            yield config


def unsafe_json_fields(model_classes) -> list[checks.Error]:
    """An error for each JSON column of these models whose encoder may write NaN/Infinity."""
    errors = []
    for model in model_classes:
        for field in model._meta.local_fields:
            if isinstance(field, models.JSONField) and not (
                isinstance(field.encoder, type) and issubclass(field.encoder, SafeJSONEncoder)
            ):
                errors.append(
                    checks.Error(
                        f"{model._meta.label}.{field.name} is a JSONField whose encoder writes "
                        "NaN/Infinity, which PostgreSQL refuses.",
                        hint="Use mlworkspace.fields.JSONField (or encoder=SafeJSONEncoder).",
                        obj=field,
                        id="mlworkspace.E020",
                    )
                )
    return errors


@checks.register(checks.Tags.models)
def check_json_fields_are_safe(app_configs=None, **kwargs):
    """Every JSON column of the project's own apps writes NaN/Infinity as null."""
    return unsafe_json_fields(model for config in _project_apps(app_configs) for model in config.get_models())
