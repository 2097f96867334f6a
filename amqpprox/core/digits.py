"""Numbers given as text (control arguments, REST paths, query values, PROXY headers).

``str.isdigit()`` alone is not enough: it also accepts characters ``int()`` refuses,
such as the superscript two, and other scripts' digits that no client sends.
"""

from __future__ import annotations


def ascii_digits(text: str) -> bool:
    """True for one or more of the characters 0-9 and nothing else."""
    return text.isascii() and text.isdigit()
