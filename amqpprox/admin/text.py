"""Text that came in over HTTP: valid Unicode, or refused at the door with 400.

Python strings may hold lone surrogates: a JSON ``"\\ud800"`` escape decodes to one, and
aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape`` (``\\xff``
becomes ``"\\udcff"``). Such a string cannot be encoded again, so storing or rendering
it fails later, far from the request that brought it (a 500 on every page that shows
it). The admin plane's front ends check what they take in here: ``valid_text`` for one
string, ``first_invalid`` for a parsed JSON document, ``header_text`` for a header and
``read_form`` for a dashboard form. Imports nothing of ours (``core`` has its own rule
for names, ``core.model.validate_text``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy


def valid_text(text: str) -> bool:
    """Whether ``text`` is valid Unicode: no lone surrogate (nor smuggled non-UTF-8 byte)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_invalid(document: object) -> str | None:
    """Where the first invalid string (key or value) of a parsed JSON document is, as
    marshmallow's errors name places (``backends.0``; ``document`` for the whole);
    ``None`` when every string is valid. Iterative: as deep as ``json.loads`` went."""
    pending: list[tuple[str, object]] = [("", document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            if not valid_text(value):
                return where or "document"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not valid_text(str(key)):
                    return f"a key of {where or 'the document'}"
                pending.append((f"{where}.{key}" if where else str(key), item))
        elif isinstance(value, list):
            pending.extend(
                (f"{where}.{index}" if where else str(index), item)
                for index, item in enumerate(value)
            )
    return None


def header_text(request: web.BaseRequest, name: str) -> str | None:
    """The header's value, or ``None`` when it is absent or not valid UTF-8 (treat that
    as absent: a token or cookie that is not text never matches anything)."""
    value = request.headers.get(name)
    if value is None or not valid_text(value):
        return None
    return value


async def read_form(request: web.BaseRequest) -> MultiDictProxy[Any]:
    """``request.post()``, with a form that is not valid UTF-8 refused as a 400 (aiohttp
    raises ``UnicodeDecodeError`` for ``\\xff`` or ``%FF`` in a url-encoded body)."""
    try:
        form = await request.post()
    except UnicodeError as error:
        raise web.HTTPBadRequest(text="the form is not valid UTF-8") from error
    for key, value in form.items():
        if not valid_text(key) or (isinstance(value, str) and not valid_text(value)):
            raise web.HTTPBadRequest(text="the form is not valid UTF-8")
    return form
