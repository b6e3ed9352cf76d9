"""Sphinx extension: old page addresses keep working after a page moves.

The book's chapters were renumbered once (Parts I-III, issue 20), which changed their file names and so the
addresses of their pages. Readers have links to the old ones. ``moved_pages`` in ``_config.yml`` (under
``sphinx: config:``) maps each old page name to its new one, both relative to the book's root and without
suffix::

    moved_pages:
      chapters/09_fig6_mnist: chapters/06_fig6_mnist

After an HTML build, each old name gets a small page that sends the browser on to the new page (keeping any
``#anchor``) and shows a plain link for readers without JavaScript. The build fails if a map entry points at
a page the book does not have, or names an old page that is still a page of the book.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Moved: {title}</title>
<link rel="canonical" href="{href}">
<meta http-equiv="refresh" content="0; url={href}">
<script>location.replace({href_js} + location.hash);</script>
</head>
<body>
<p>This chapter moved when the book was renumbered: it is now <a href="{href}">{title}</a>.</p>
</body>
</html>
"""


def redirect_page(old: str, new: str, title: str) -> str:
    """The HTML written at ``old``.html: it sends the reader to ``new``.html, relative to ``old``'s folder."""
    href = Path(os.path.relpath(f"{new}.html", os.path.dirname(old) or ".")).as_posix()
    return PAGE.format(title=html.escape(title), href=html.escape(href, quote=True),
                       href_js=repr(href))


def write_moved_pages(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    moved: dict[str, str] = app.config.moved_pages
    if not isinstance(moved, dict):
        raise ExtensionError(f"moved_pages must map old page names to new ones, got {type(moved).__name__}")
    for old, new in moved.items():
        if new not in app.env.all_docs:
            raise ExtensionError(f"moved_pages: {old!r} moved to {new!r}, which is not a page of the book")
        if old in app.env.all_docs:
            raise ExtensionError(f"moved_pages: {old!r} is still a page of the book; remove it from the map")
        title = app.env.titles[new].astext() if new in app.env.titles else new
        target = Path(app.outdir) / f"{old}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(redirect_page(old, new, title), encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("moved_pages", {}, "html")
    app.connect("build-finished", write_moved_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
