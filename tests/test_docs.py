"""The documentation site builds strictly, documents every public name, and its links hold.

``mkdocs build --strict`` turns every warning into a failure: a nav entry or a link to a
page that does not exist, an anchor that does not exist (``validation:`` in mkdocs.yml), a
docstring Griffe cannot read (a documented parameter missing from the signature, ...), or
an API cross-reference that does not resolve. The other tests check what the build does not:
that a new public name or error class cannot ship without its documentation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import atrepo
import atrepo.errors

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once for this module, strictly, into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log, f"mkdocs build printed warnings:\n{log}"
    return out


def test_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "api" / "atrepo" / "index.html").is_file()


def _api_ids(site: Path) -> set[str]:
    ids: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        ids.update(re.findall(r'id="(atrepo[\w.]*)"', page.read_text(encoding="utf-8")))
    return ids


def test_every_public_name_has_an_api_entry(site: Path) -> None:
    # documented either at the top level (atrepo.read_car) or in its module (atrepo.cid.CID);
    # a module is documented by its own page (atrepo.car)
    ids = _api_ids(site)
    missing = [name for name in atrepo.__all__
               if not any(re.fullmatch(rf"atrepo(\.\w+)?\.{re.escape(name)}", i) for i in ids)]
    assert not missing, (f"public names without an entry in the API reference: {missing}; "
                         "add them to a page under docs/api/ (and to the nav in mkdocs.yml)")


def test_every_error_class_has_a_section() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (\w+)", text, flags=re.MULTILINE))
    missing = sorted(set(atrepo.errors.__all__) - headings)
    assert not missing, f"docs/errors.md has no section for {missing}"


def _anchors(site: Path, page: Path) -> set[str]:
    # use_directory_urls: docs/a/b.md is site/a/b/index.html, docs/a/index.md site/a/index.html
    rel = page.relative_to(DOCS).with_suffix("")
    html = site / (rel.parent if rel.name == "index" else rel) / "index.html"
    return set(re.findall(r'id="([^"]+)"', html.read_text(encoding="utf-8")))


def test_internal_links_resolve(site: Path) -> None:
    # mkdocs validates these too (validation: in mkdocs.yml); this check does not depend on
    # that configuration staying switched on
    broken = []
    for source in sorted(DOCS.rglob("*.md")):
        text = re.sub(r"```.*?```", "", source.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            page = (source.parent / path).resolve() if path else source
            if not page.is_file() or DOCS not in page.parents:
                broken.append(f"{source.relative_to(ROOT)}: {target}")
            elif anchor and anchor not in _anchors(site, page):
                broken.append(f"{source.relative_to(ROOT)}: {target} (no such anchor)")
    assert not broken, "broken links in docs/:\n" + "\n".join(broken)
