"""Names and values in messages: shown whole when short, cut when they would swamp a line.

A column name can be 100,000 characters long and a cell 50 MB; an error
message, a report cell or a stored row must stay readable and small.
"""
from __future__ import annotations

# Characters of a name (column, label, file) shown in a message.
NAME_WIDTH = 80


def shorten(text: str, width: int = NAME_WIDTH) -> str:
    """``text`` on one line, cut to ``width`` characters with a count of what was left out.

    >>> shorten("a" * 100, 20)
    'aa…(+98 characters)'
    """
    text = str(text).replace("\r", " ").replace("\n", " ")
    if len(text) <= width:
        return text
    # The count's own length depends on how much is kept; a digit of slack is enough.
    keep = max(1, width - len(f"…(+{len(text)} characters)"))
    return text[:keep] + f"…(+{len(text) - keep} characters)"


def display(name) -> str:
    """A name quoted for a message (``'island'``), cut when long."""
    return repr(shorten(str(name)))


def display_list(names, most: int = 20) -> str:
    """Names quoted for a message (``'a', 'b' and 3 more``); ``none`` for none."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(display(name) for name in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
