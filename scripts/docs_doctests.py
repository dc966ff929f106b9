"""A Griffe extension for the API reference (``mkdocs.yml``: the mkdocstrings handler's ``extensions``).

The package's docstrings are plain text with doctest examples, which Markdown would read as
prose (``x[::2]`` becomes a link). This fences each example as code, at its own indentation
(inside a Google-style ``Example:`` section too).
"""

from __future__ import annotations

from typing import Any

from griffe import Extension


def fence_doctests(text: str) -> str:
    r"""Put each run of doctest lines (``>>>`` up to a blank or less indented line) in a code fence.

    >>> fence_doctests("Example:\n    >>> x[::2]\n    [1]\n\nMore.").splitlines()
    ['Example:', '    ```pycon', '    >>> x[::2]', '    [1]', '    ```', '', 'More.']
    """
    out: list[str] = []
    indent: str | None = None  # the example's indentation while inside one
    for line in text.splitlines():
        if indent is not None and (not line.strip() or not line.startswith(indent)):
            out.append(f"{indent}```")
            indent = None
        if indent is None and line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
        out.append(line)
    if indent is not None:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestBlocks(Extension):
    """Griffe extension: fence the doctest examples of every docstring."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
