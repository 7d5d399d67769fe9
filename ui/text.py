"""The one escaping rule for user text on the dashboard. Node ids, names, road names, dataset and
run names, file names and messages that quote them come from files anyone can write: shown through
Markdown (captions, labels, tabs, metrics) or HTML (st.html, plotly hover and ticks), an id like
`<img src=x onerror=…>` or `![b](http://host/b.png)` would run or fetch. Every view passes such text
through `md` (or `code`, for an id shown as code) or `html` where it meets those. Plain-text places
take it through `one_line` only (select box options; map tooltip values, which Streamlit escapes for
HTML itself) or as it is (table cells).

All three also make the text one line of left-to-right characters: a newline would end a Markdown block
and start another, and a bidi override (U+202A–U+202E, U+2066–U+2069) would show the rest of a
sentence backwards; each is shown visibly instead, e.g. `[U+202E]`."""

from __future__ import annotations

import re

# Line breaks and the bidi embedding / override / isolate controls.
_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x85\u2028\u2029]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Markdown specials that act anywhere in a line, escaped with a backslash (CommonMark lets any
# ASCII punctuation be escaped; the rest are left alone so ordinary text and paths read unchanged):
# code, emphasis (an `_` inside a word is no emphasis), links and images, HTML, entities, `$` maths,
# `~` strike-through; and the block markers that act at the start of a line (headings, quotes,
# lists, rules).
_INLINE = re.compile(r"[\\`*\[\]<$~]|&(?=#?\w+;)|(?<!\w)_|_(?!\w)")
_LINE_START = re.compile(r"^(\s*)([-+=#>]|\d+[.)])")
# What Streamlit and GitHub Markdown find in the text itself, after the escapes are gone: `:red[…]`
# colours, `:material/…:` icons and `:smile:` shortcodes (a `:` right before a character), and bare
# web or mail addresses (`www.`, `://`, `@`). A word joiner (U+2060, invisible) breaks each.
_JOINED = re.compile(r"(?<=:)(?=\S)|(?i:(?<=www)(?=\.))|(?<=@)")
_ICON = re.compile(r"(?<=:)(?=material/)")
# Numeric references, which plotly's text renderer also reads (it knows no `&quot;`).
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})


def one_line(text: object) -> str:
    """`text` as a string on one line, with bidi controls shown as their code point."""
    text = _BREAKS.sub(" ", str(text))
    return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def md(text: object) -> str:
    """User text to put inside Markdown (st.markdown, st.caption, st.info…, widget labels, tabs,
    metric labels): it reads as the literal characters, never as formatting, HTML, a link, an
    image, maths, a colour or an icon."""
    text = _JOINED.sub("\u2060", one_line(text))
    text = _INLINE.sub(lambda m: "\\" + m.group(), text)
    return _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def code(text: object) -> str:
    """User text as a Markdown code span (ids shown as ids): literal inside, with a fence longer
    than any run of backticks in it, and `:material/` broken up, which Streamlit would otherwise
    rewrite before parsing."""
    text = _ICON.sub("\u2060", one_line(text))
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ", "") or text[-1:] in ("`", " ") else ""     # Markdown drops one each side
    return f"{fence}{pad}{text}{pad}{fence}"


def html(text: object) -> str:
    """User text to put inside HTML (st.html, pydeck tooltip templates, plotly hover templates,
    tick and legend labels): it reads as the literal characters, never as a tag or an attribute."""
    return one_line(text).translate(_HTML)
