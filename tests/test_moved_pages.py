"""The page written at a moved chapter's old address (lnlib._moved_pages)."""

from __future__ import annotations

import re

from lnlib._moved_pages import redirect_page


def test_redirect_page_points_at_the_new_page_relative_to_the_old_folder():
    page = redirect_page("chapters/09_fig6_mnist", "chapters/06_fig6_mnist", "6. Figure 6 <MNIST>")
    assert re.search(r'http-equiv="refresh" content="0; url=06_fig6_mnist\.html"', page)
    assert '<a href="06_fig6_mnist.html">6. Figure 6 &lt;MNIST&gt;</a>' in page
    assert "location.replace('06_fig6_mnist.html' + location.hash)" in page  # keeps an #anchor
    deeper = redirect_page("old/a/page", "chapters/new", "New")
    assert 'href="../../chapters/new.html"' in deeper
