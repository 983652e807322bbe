"""The report as one self-contained HTML page (report.html): its Markdown rendered by
markdown-it-py, every figure inlined as a data: URI, so MLflow's artifact view shows it whole."""

from __future__ import annotations

import base64

from markdown_it import MarkdownIt

FIGURE_PREFIX = "figures/"  # how report.md links its figures
STYLE = (
    "body{font-family:sans-serif;max-width:1250px;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%}li{margin:.3em 0}"
    "code{font-size:12px}"
)


def to_html(text: str, images: dict[str, bytes]) -> str:
    """The page of the Markdown `text`, whose figures/<name> images are `images[name]` (PNG).
    Raw HTML in the text is escaped, not passed through: labels and tags come from runs."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            src = str(child.attrGet("src") or "")
            if child.type == "image" and src.startswith(FIGURE_PREFIX):
                name = src.removeprefix(FIGURE_PREFIX)
                if name not in images:
                    raise ValueError(f"the report links {src}, a figure it does not have")
                child.attrSet(
                    "src", "data:image/png;base64," + base64.b64encode(images[name]).decode()
                )
    body = md.renderer.render(tokens, md.options, {})
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>FashionMNIST study "
        f"replication</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n"
    )
