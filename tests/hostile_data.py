"""A workspace whose dataset and model carry hostile text: node ids, names and road names that are a
script, a tag, a Markdown image and `javascript:` link, a spreadsheet formula, an RTL override, a
newline, a Streamlit colour and icon, and LaTeX; the dataset's and the run's folder names too.
Shared by the AppTest check (tests/views/test_hostile_text.py) and the browser test
(tests/e2e/test_hostile_data.py)."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from markdown_it import MarkdownIt

from stmgt.data.folder import read_folder, write_folder
from stmgt.data.simulate import simulate
from stmgt.evaluation.evaluate import evaluate
from stmgt.data.graph import RoadGraph
from stmgt.model import STMGTConfig
from stmgt.storage.runs import Run
from stmgt.training.trainer import TrainConfig, fit

# Each would run, fetch, link, format or reorder if it reached HTML or Markdown unescaped.
PAYLOADS = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "![b](http://example.invalid/b.png)",
            "[x](javascript:alert(3))", '=HYPERLINK("http://example.invalid/f")', "abc\u202eexe.txt",
            "two\nlines", ":red[x] :material/home:", "$x$"]
# Node ids cannot hold a line break or an invisible control (the importer refuses them); names can.
ID_PAYLOADS = [p for p in PAYLOADS if p.isprintable()]
# Folder names cannot hold "/" or a newline.
DATASET_NAME = "<img src=x onerror=alert(4)> :red[d] $d$"
RUN_NAME = "[r](javascript:alert(5)) <b onmouseover=alert(6)>run :red[r]"
DATASET_LABEL = f"Imported: {DATASET_NAME}"
WEEKS = 2
# Payload pieces that no escaping lets through as they are (escaping shows them visibly or as a space).
NEVER_RAW = ("\u202e", "two\nlines")

# A CommonMark parser that keeps escaped characters apart from the plain text runs.
_MARKDOWN = MarkdownIt("commonmark").disable("text_join")
_RENDER = MarkdownIt("commonmark").enable("strikethrough")
# Plain text that Streamlit or GitHub Markdown still act on, though CommonMark leaves it as text:
# `$` maths, the payloads' colour, icon and shortcodes (the app's own icons are `:material/…:` too),
# bare addresses, a `[…](…)` link.
_LIVE_TEXT = re.compile(r"\$|:(?:red\[|material/home|smile:|\+1:)|www\.|://|@\w|\[[^\]]*\]\(")
_HTML_TAG = re.compile(r"<\s*/?\s*(?:img|script|a)\b", re.IGNORECASE)


def hostile_graph() -> RoadGraph:
    """The HCMC graph with its first nodes renamed to the payloads (ids where an id may hold them,
    and names) and its road names cycling through them; the first node, selected by default on
    every page, is the script."""
    graph = RoadGraph.hcmc()
    nodes, edges = graph.nodes.copy(), graph.edges.copy()
    renamed = {old: new for old, new in zip(nodes["node_id"], ID_PAYLOADS)}
    nodes["node_id"] = nodes["node_id"].replace(renamed)
    nodes.loc[:len(PAYLOADS) - 1, "name"] = [f"{p} street" for p in PAYLOADS]
    edges[["source", "target"]] = edges[["source", "target"]].replace(renamed)
    edges["road_name"] = [PAYLOADS[i % len(PAYLOADS)] for i in range(len(edges))]
    return RoadGraph(nodes, edges, source="hostile")


def hostile_workspace(root: Path) -> Path:
    """Write the hostile dataset into `root`'s workspace and train a barely trained, evaluated
    model for it (seconds on a CPU); returns the run folder."""
    dataset_dir = root / "datasets" / DATASET_NAME
    write_folder(simulate(weeks=WEEKS, seed=3, graph=hostile_graph()), dataset_dir)
    dataset, spec = read_folder(dataset_dir), {"kind": "folder", "path": str(dataset_dir)}
    run_dir = root / "runs" / RUN_NAME
    model = STMGTConfig(hidden_dim=8, num_blocks=1, heads=2, num_mixtures=2)
    fit(dataset, model, TrainConfig(epochs=1, max_batches=2, batch_size=16, calibrate=False), run_dir, spec)
    evaluate(Run(run_dir), dataset, spec, max_batches=1)
    return run_dir


def markdown_dangers(source: str) -> list[str]:
    """What in Markdown `source` would not read as literal text on the dashboard: raw HTML, images,
    links, live text (see `_LIVE_TEXT`), an icon in a code span, and raw payload pieces."""
    found = [piece for piece in NEVER_RAW if piece in source]
    for block in _MARKDOWN.parse(source):
        if block.type == "html_block":
            found.append(block.content)
        for token in block.children or []:
            if token.type in ("html_inline", "image", "link_open"):
                found.append(f"{token.type} {token.content}")
            elif token.type == "text":
                found += _LIVE_TEXT.findall(token.content)
            elif token.type == "code_inline" and ":material/" in token.content:
                found.append(token.content)
    return found


def rendered_text(markdown: str) -> str:
    """The text a reader sees of rendered Markdown: tags dropped, entities decoded, word joiners
    (invisible; `ui.text` uses them) removed."""
    return unescape(re.sub(r"<[^>]+>", "", _RENDER.render(markdown))).strip().replace("\u2060", "")


def html_dangers(source: str) -> list[str]:
    """Tags of the payloads, and raw payload pieces, in HTML `source` (st.html, plotly text)."""
    return _HTML_TAG.findall(source) + [piece for piece in NEVER_RAW if piece in source]
