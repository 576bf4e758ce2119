"""Make characters that change how text looks, but not what it does, visible.

A command shown for approval must read as it runs. Bidirectional overrides (U+202E turns
``rm -rf ~ #txt.exe`` around on screen), zero-width characters, other control characters
and unusual spaces are replaced by a visible ``⟦U+202E⟧``; newlines and tabs stay.
"""

from __future__ import annotations

import unicodedata

__all__ = ["WARNING", "reveal"]

WARNING = "⚠️ invisible characters, shown as ⟦U+…⟧:"
_KEEP = {"\n", "\t", " "}


def _hidden(char: str) -> bool:
    if char in _KEEP:
        return False
    return unicodedata.category(char) in ("Cf", "Cc", "Co", "Cs", "Cn", "Zl", "Zp", "Zs")


def reveal(text: str) -> tuple[str, bool]:
    """``text`` with every hidden character as ``⟦U+XXXX⟧``, and whether there was one."""
    if text.isascii() and text.isprintable():
        return text, False
    out, found = [], False
    for char in text:
        if _hidden(char):
            out.append(f"⟦U+{ord(char):04X}⟧")
            found = True
        else:
            out.append(char)
    return "".join(out), found
