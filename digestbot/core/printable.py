"""One line of visible text: what a query or a subscription's name must be.

Both end up in email subjects and in log lines, where a line break would break the message and
an invisible character would hide what is there.
"""

from __future__ import annotations

import unicodedata

# splitlines() ends a line at each of these; a header or a log line must not contain them.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_KINDS = {"Cc": "the control character", "Cf": "the invisible formatting character", "Cs": "the lone surrogate",
          "Co": "the private-use character", "Cn": "the unassigned character"}


def unprintable(text: str) -> tuple[int, str] | None:
    """The first character of ``text`` that has no place in one line of visible text, as its
    index and a description, or None.

    Refused: what ``str.isprintable`` refuses (control and format characters such as line
    breaks, tabs, NUL, zero-width and bidirectional marks, surrogates, private-use and
    unassigned code points), except spaces (category Zs): a no-break space pasted from a web
    page is a space to the lexer, and harmless in a header.
    """
    if text.isprintable():  # nearly always: one pass in C
        return None
    for index, char in enumerate(text):
        if char.isprintable() or unicodedata.category(char) == "Zs":
            continue
        if char in _LINE_BREAKS:
            return index, "a line break"
        if char == "\t":
            return index, "a tab"
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # how Python passes on a command-line byte that is not UTF-8
            return index, f"a byte that is not UTF-8 (0x{code - 0xDC00:02X})"
        kind = _KINDS.get(unicodedata.category(char), "the invisible character")
        name = unicodedata.name(char, "")
        return index, f"{kind} U+{code:04X}" + (f" ({name})" if name else "")
    return None  # pragma: no cover - isprintable() said there was one
