"""The API's JSON parser: DRF's, after a depth check that cannot recurse.

A body nested 10,000 levels deep made json.load raise RecursionError (a 500 on every JSON
endpoint), and one nested 900 levels parsed but broke later in deepcopy or the manifest
diff. The raw text is scanned first (``mlworkspace.jsondepth``, linear, no recursion), so
a body deeper than ``settings.JSON_MAX_DEPTH`` is a 400 naming where, in the one error shape.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .jsondepth import message, too_deep_in_text


def depth_error(where: str, limit: int):
    """The 400 (InvalidInput) for JSON nested deeper than `limit` at the pointer `where`."""
    # Imported here: mlworkspace.errors imports DRF's views, which import this parser.
    from .errors import InvalidInput

    text = message(limit)
    return InvalidInput(f"{where or '/'}: {text}", [{"path": where or "/", "message": text}])


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        # Read at most the body limit (+1 to see it is exceeded): DRF may hand over the raw
        # request stream, whose reads Django does not bound the way it bounds request.body.
        cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if cap is None else stream.read(cap + 1)
        if cap is not None and len(raw) > cap:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text: {exc.reason}") from None
        limit = settings.JSON_MAX_DEPTH
        where = too_deep_in_text(text, limit)
        if where is not None:
            raise depth_error(where, limit)
        return super().parse(io.BytesIO(raw), media_type, parser_context)
