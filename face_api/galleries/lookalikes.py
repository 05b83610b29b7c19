"""What a person would call a name: its look, the key erasure goes by.

A right-to-erasure request is made by a person's visible name, and must reach every face a person
would call by that name, whichever door put it there and whichever version enrolled it. Two names
that look the same have the same look: ``look("Alice")`` is ``look("Alice\\u200b")`` (an
invisible character), ``look("José")`` whatever its normal form, ``look("Аlice")`` (a Cyrillic А)
and ``look("Alice ")``.

The look of a name is its NFC form without the characters that show nothing (format, control,
line and paragraph separators, default-ignorable code points), its spaces as single plain spaces
with none at either end, and each character replaced by a representative of the characters
Unicode's confusables data (UTS #39, as the ``confusable_homoglyphs`` package ships it) says look
like it: the least code point of its group, the groups being the data's single-character pairs
joined transitively. Case stays: ``A`` and ``a`` do not look the same.
"""

from __future__ import annotations

import functools
import unicodedata

# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties): code points that show nothing
# where they are not supported, beyond the format characters (Cf) this module drops anyway.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Categories that show nothing on their own: controls, formats (zero-width, bidi, tags), line
# and paragraph separators, surrogates.
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def is_invisible(char: str) -> bool:
    code = ord(char)
    if unicodedata.category(char) in INVISIBLE_CATEGORIES:
        return True
    return any(low <= code <= high for low, high in DEFAULT_IGNORABLE)


def look(name: str) -> str:
    """The name as it looks: equal for any two names a person would read as the same."""
    visible = "".join(c for c in unicodedata.normalize("NFC", name) if not is_invisible(c))
    spaced = " ".join(visible.split())  # every kind of space as one plain space, none at the ends
    groups = _groups()
    return unicodedata.normalize(
        "NFC", "".join(groups.get(c, c) for c in unicodedata.normalize("NFD", spaced))
    )


def look_key(name: str) -> str:
    """``look(name)`` as a filter may name it: its UTF-8 in hex, whatever characters it holds."""
    return look(name).encode("utf-8", "surrogatepass").hex()


@functools.cache
def _groups() -> dict[str, str]:
    """Each character that looks like others -> its group's representative."""
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def root(char: str) -> str:
        while parent.get(char, char) != char:
            parent[char] = parent.get(parent[char], parent[char])  # halve the path
            char = parent[char]
        return char

    for source, targets in confusables_data.items():
        for target in targets:
            other = target["c"]
            if len(source) == 1 and len(other) == 1:
                a, b = root(source), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the least code point leads its group
    return {char: root(char) for char in parent}
