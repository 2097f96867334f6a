"""The ``T`` field value type.

Owns :class:`Timestamp`, an ``int`` subclass that field tables decode ``T`` values to and
encode back as ``T``. Sans-IO, imports nothing of ours.
"""

from __future__ import annotations

import datetime as _dt
from typing import Final

__all__ = ["Timestamp"]

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class Timestamp(int):
    """A ``T`` field value: whole seconds since the Unix epoch (unsigned 64-bit).

    An ``int`` subclass so every value on the wire decodes (``datetime`` stops at the
    year 9999) and so it encodes back as ``T`` rather than as an integer.
    """

    __slots__ = ()

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Timestamp:
        """Whole seconds of ``value`` (naive values are taken as UTC)."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return cls((value - _EPOCH) // _dt.timedelta(seconds=1))

    def to_datetime(self) -> _dt.datetime:
        """The timestamp as an aware UTC datetime; ``OverflowError`` past year 9999."""
        return _EPOCH + _dt.timedelta(seconds=int(self))

    def __repr__(self) -> str:
        return f"Timestamp({int(self)})"
