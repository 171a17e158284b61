"""Clean scraped news text: drop page furniture, keep paragraphs.

The cleaned text is what we store and what chunk offsets point into, so
cleaning happens exactly once, before chunking."""

from __future__ import annotations

import re

# Whole lines that are page furniture, not article text (German and English).
# Kept deliberately narrow: a false positive deletes a real sentence.
_BOILERPLATE = re.compile(
    r"""^(?:
        partner-?inhalte? | anzeige | werbung | sponsored(?:\ content)? | advertisement |
        (?:artikel\ )?teilen | share(?:\ this\ (?:article|story))? | drucken | print |
        mehr\ zum\ thema:? | related(?:\ articles|\ stories)?:? | top\ stories |
        (?:jetzt\ )?newsletter\ abonnieren.{0,80} | sign\ up\ for\ (?:our|the)\ .{0,60}newsletter.{0,40} |
        (?:lesen\ sie\ (?:auch|mehr)|read\ (?:more|also)|see\ also|weiterlesen)\b.{0,160} |
        (?:foto|bild|photo|image|credit)s?\s*:.{0,100} | getty\ images | skip\ to\ (?:main\ )?content |
        (?:zum|to\ the)\ (?:artikel|article) | kommentare?\ \(\d+\) | \d+\ comments? |
        alle\ rechte\ vorbehalten\.? | all\ rights\ reserved\.? | ©.{0,80}
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
INVISIBLE = re.compile("[\u0000\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_ODD_SPACES = re.compile("[\u00a0\u2000-\u200a\u202f\u205f\u3000\t]")
_MULTI_SPACE = re.compile(" {2,}")
# Lone surrogates: JSON's "\ud800" and undecodable file-name bytes (surrogate escapes).
# Not valid UTF-8, so SQLite refuses them; each becomes U+FFFD.
_SURROGATES = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (same length), so it encodes as UTF-8."""
    return _SURROGATES.sub("\ufffd", text)


def clean_text(text: str) -> str:
    """Normalise line ends and spaces, drop boilerplate lines and empty runs.

    Paragraphs (blank-line separated) are kept; a single newline inside a
    paragraph is kept too, since news exports use both conventions."""
    text = valid_text(text).replace("\r\n", "\n").replace("\r", "\n")
    text = INVISIBLE.sub("", text)
    text = _ODD_SPACES.sub(" ", text)
    out: list[str] = []
    for line in text.split("\n"):
        line = _MULTI_SPACE.sub(" ", line).strip()
        if line and _BOILERPLATE.match(line):
            continue
        if not line and (not out or out[-1] == ""):
            continue  # collapse empty runs, drop leading blank lines
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out)


def clean_field(value: object, limit: int = 1000) -> str | None:
    """A metadata value as one tidy line, or None when empty."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value if v not in (None, ""))
    text = _MULTI_SPACE.sub(" ", _ODD_SPACES.sub(" ", INVISIBLE.sub("", valid_text(str(value))))).strip()
    text = " ".join(text.split())
    return text[:limit] or None
