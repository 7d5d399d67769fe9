"""The escaping rule for user text (`ui.text`): Markdown and HTML syntax comes out of `md`, `code` and
`html` as the literal characters, read back by a Markdown or HTML parser, and ordinary text unchanged.
The hostile payloads themselves are cases of tests/test_bad_inputs.py."""

from html import unescape

import pytest
from markdown_it import MarkdownIt

from tests.hostile_data import html_dangers, markdown_dangers, rendered_text
from ui.text import code, html, md, one_line

EXTRA = ["**bold** _it_ `c`", "# heading", "- item", "12. item", "> quote", "---", "&lt;b&gt; &#60;i&#62;",
         "a\\b", "www.example.invalid", "mail@example.invalid", "<http://example.invalid>", ":smile: :+1:",
         "~~gone~~", "`` ` ``", "\u2066isolated\u2069 \u202aembedded\u202c"]
RENDER = MarkdownIt("commonmark")
WORD_JOINER = "\u2060"


@pytest.mark.parametrize("text", EXTRA)
def test_md_shows_the_literal_text_and_nothing_live(text):
    assert markdown_dangers(md(text)) == []
    assert rendered_text(md(text)) == one_line(text).strip()


@pytest.mark.parametrize("text", EXTRA)
def test_code_is_one_code_span_of_the_literal_text(text):
    tokens = RENDER.parseInline(code(text))[0].children
    assert [t.type for t in tokens] == ["code_inline"]
    assert tokens[0].content.replace(WORD_JOINER, "") == one_line(text)
    assert markdown_dangers(code(text)) == []


@pytest.mark.parametrize("text", EXTRA + ["it's \"quoted\""])
def test_html_has_no_tag_and_reads_back(text):
    escaped = html(text)
    assert "<" not in escaped and ">" not in escaped and html_dangers(escaped) == []
    assert "&quot;" not in escaped                      # plotly's text renderer knows numeric references only
    assert unescape(escaped) == one_line(text)


@pytest.mark.parametrize("text", ["line 3: bad value in speed.csv", "n07 · Lê Lợi – Hàm Nghi", "use_weather",
                                  "/tmp/a-b/c_d.csv (x, y)!", "Run: e2e-quick-20261206-071500"])
def test_ordinary_text_reads_unchanged(text):
    assert md(text) == text and html(text) == text


def test_newlines_and_bidi_controls_are_shown_not_obeyed():
    assert one_line("two\nlines\r\nthree\u2028four") == "two lines three four"
    assert one_line("abc\u202eexe.txt") == "abc[U+202E]exe.txt"
    assert "\u202e" not in md("\u202e") + code("\u202e") + html("\u202e")
