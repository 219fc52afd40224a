"""A Griffe extension for the API reference: read atrepo's docstrings as Markdown.

atrepo's docstrings are Google style with a few habits from Sphinx that Griffe's Google
parser and Markdown do not know. Before a docstring is parsed, this extension rewrites:

* an ``Example:`` section heading (the napoleon spelling) to ``Examples:``, so doctests are
  shown as Python console blocks instead of Markdown block quotes that mangle their output;
* reST roles (``:class:`~atrepo.RepoSnapshot```, ``:func:`read_car```) to inline code, the
  ``~`` form showing the last component as Sphinx does;
* a paragraph ending in ``::`` (a reST literal block) to end in ``:``; the indented block
  after it is already a Markdown code block.

Loaded from mkdocs.yml (``extensions:``); excluded from the site's pages.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_EXAMPLE_HEADING = re.compile(r"^Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")
_LITERAL_MARKER = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


def markdown_docstring(text: str) -> str:
    """Return ``text`` with the Sphinx habits above turned into Markdown."""
    text = _EXAMPLE_HEADING.sub("Examples:", text)
    text = _ROLE.sub(_role, text)
    return _LITERAL_MARKER.sub(":", text)


class MarkdownDocstrings(Extension):
    """Rewrite every docstring with :func:`markdown_docstring` before it is parsed."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)

    def on_package(self, *, pkg: Object, **kwargs: Any) -> None:
        # the top-level package is not among the objects on_object sees
        self.on_object(obj=pkg)
