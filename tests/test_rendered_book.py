"""The built book, opened in headless Chromium with every host name unresolvable (no network, no CDN).

For every page of ``_build/html``: every equation is typeset by the MathJax the build ships (no TeX
errors), every image exists, every internal link (and its #anchor) resolves; a screenshot of each page
is saved under ``_build/screenshots/``. Run by ``make test`` after the book is built (marker ``browser``);
skipped with a message where Chromium or the built book is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
SKIP_PAGES = {"search.html", "genindex.html"}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no host name resolves: the page gets no network at all
    "--virtual-time-budget=15000", "--window-size=1280,2000",
]

pytestmark = pytest.mark.browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _moved_pages() -> dict[str, str]:
    """Old page name -> new page name (``moved_pages`` of ``_config.yml``): the old addresses are small pages
    that send the reader on, checked by their own test rather than as pages of the book."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config.get("sphinx", {}).get("config", {}).get("moved_pages", {})


def _pages() -> list[Path]:
    if not (HTML / "index.html").exists():
        return []
    moved = {(HTML / f"{old}.html").resolve() for old in _moved_pages()}
    return sorted(p for p in HTML.rglob("*.html")
                  if p.name not in SKIP_PAGES and "_static" not in p.parts and p.resolve() not in moved)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if attr.get("id"):
            self.ids.add(attr["id"])
        if tag == "a" and attr.get("href"):
            self.links.append(attr["href"])
        if tag == "img" and attr.get("src"):
            self.images.append(attr["src"])


def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _render(browser: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def browser() -> str:
    found = _chromium()
    if found is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium chromium-driver); "
                    "the rendered-book checks need it")
    if not _pages():
        pytest.skip(f"no built book in {HTML}; run `make html` first")
    return found


def test_every_page_renders_its_equations_offline(browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    failures = []
    for page in _pages():
        source = page.read_text(encoding="utf-8")
        expected = len(re.findall(r'class="math[ "]', source))
        shot = SHOTS / (str(page.relative_to(HTML)).replace("/", "__").removesuffix(".html") + ".png")
        dom = _render(browser, page, "--dump-dom", f"--screenshot={shot}").stdout  # one load, both outputs
        rendered = dom.count("<mjx-container")
        if rendered < expected:
            failures.append(f"{page.relative_to(HTML)}: {rendered} of {expected} equations typeset")
        if "<mjx-merror" in dom:
            failures.append(f"{page.relative_to(HTML)}: MathJax reports a TeX error")
        if not shot.exists() or shot.stat().st_size < 10_000:
            failures.append(f"{page.relative_to(HTML)}: no screenshot")
    assert not failures, "\n".join(failures)


def test_images_and_internal_links_resolve(browser):
    failures = []
    for page in _pages():
        parsed = _parse(page)
        for src in parsed.images:
            if urlsplit(src).scheme in ("http", "https", "data"):
                continue
            if not (page.parent / unquote(urlsplit(src).path)).exists():
                failures.append(f"{page.relative_to(HTML)}: missing image {src}")
        for href in parsed.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("mailto:"):
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                failures.append(f"{page.relative_to(HTML)}: broken link {href}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in _parse(target).ids:
                failures.append(f"{page.relative_to(HTML)}: broken anchor {href}")
    assert not failures, "\n".join(failures)


def test_pages_need_no_cdn_to_read():
    """No script or stylesheet of the built pages is fetched from another host (MathJax included)."""
    if not _pages():
        pytest.skip(f"no built book in {HTML}; run `make html` first")
    external = set()
    for page in _pages():
        for match in re.finditer(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text("utf-8")):
            external.add(match.group(1))
    allowed = {u for u in external if "launch" in u or "binder" in u or "colab" in u}
    assert external - allowed == set(), f"pages load resources from other hosts: {sorted(external - allowed)}"


def test_no_page_shows_a_markdown_table_as_text_and_the_ledger_has_its_tables():
    """A Markdown table that reached the page as a paragraph shows as '| a | b |' and '|---|' to the reader;
    the ledger must show its two tables (paper, sources) as real tables with one row per claim."""
    if not _pages():
        pytest.skip(f"no built book in {HTML}; run `make html` first")
    failures = []
    for page in _pages():
        text = re.sub(r"<(pre|code|script|style)\b.*?</\1>", "", page.read_text("utf-8"), flags=re.S)
        if re.search(r"\|\s*-{3,}\s*\|", text):
            failures.append(f"{page.relative_to(HTML)}: a Markdown table rendered as text")
    assert not failures, "\n".join(failures)
    ledger = (HTML / "chapters" / "99_claims_ledger.html").read_text("utf-8")
    tables = re.findall(r'<table class="ledger">(.*?)</table>', ledger, flags=re.S)
    ledger_file = yaml.safe_load((ROOT / "data" / "claims.yml").read_text(encoding="utf-8"))
    rows = [t.count("<tr>") for t in tables]
    assert rows == [1 + len(ledger_file["paper"]), 1 + len(ledger_file["sources"])]  # a header and a row per claim


def test_every_launch_link_is_built_from_the_repository_setting():
    """Colab, Binder and repository links on every page point to ``repository.url`` and ``branch`` of
    ``_config.yml`` (the one setting a fork changes), and every chapter page has a Colab and a Binder link."""
    pages = _pages()
    if not pages:
        pytest.skip("the book is not built (make html)")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    owner_repo = urlsplit(config["url"]).path.strip("/")
    expected = {"colab.research.google.com": f"/github/{owner_repo}/blob/{config['branch']}/",
                "mybinder.org": f"/v2/gh/{owner_repo}/{config['branch']}"}
    for page in pages:
        collect = _Collect()
        collect.feed(page.read_text(encoding="utf-8"))
        found = set()
        for link in collect.links:
            parts = urlsplit(link)
            if parts.hostname in expected:
                found.add(parts.hostname)
                assert parts.path.startswith(expected[parts.hostname]), f"{page.name}: {link}"
        if page.parent.name == "chapters" and page.with_suffix(".ipynb").name in {
                p.name for p in (ROOT / "chapters").glob("*.ipynb")}:
            assert found == set(expected), f"{page.name} lacks a launch link: has {sorted(found)}"


def test_old_chapter_addresses_lead_to_the_new_pages():
    """Every page named in ``moved_pages`` of ``_config.yml`` (the chapters' addresses before the book was
    renumbered) exists in the built book and sends the reader to its new page, which exists."""
    if not _pages():
        pytest.skip("the book is not built (make html)")
    moved = _moved_pages()
    assert moved, "no moved pages recorded"
    for old, new in moved.items():
        page = HTML / f"{old}.html"
        assert page.exists(), f"the old address {old}.html is missing"
        assert not (ROOT / f"{old}.ipynb").exists() and not (ROOT / f"{old}.md").exists(), f"{old} is still a page"
        collect = _Collect()
        collect.feed(page.read_text(encoding="utf-8"))
        targets = {(page.parent / unquote(urlsplit(link).path)).resolve() for link in collect.links}
        assert targets == {(HTML / f"{new}.html").resolve()}, f"{old}.html links to {sorted(map(str, targets))}"
        assert (HTML / f"{new}.html").exists()
