"""A class name or index against a model's class names, with close matches when it is misspelt."""

from __future__ import annotations

import difflib
from typing import Sequence

from ..errors import DeconvError


def short_list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"


def class_index(name: str | int, categories: Sequence[str] | None, model: str = "the model") -> int:
    """A class index from a name (case-insensitive exact match) or an index.

    >>> class_index("Tabby", ["tiger", "tabby", "lynx"])
    1
    """
    if not isinstance(name, str):
        return name
    if not categories:
        raise DeconvError(f"{model} comes without class names (only a classifier loaded with its published "
                          f"weights has them, e.g. --model vgg16); give the class as an index instead")
    wanted = name.strip().lower()
    hits = [i for i, category in enumerate(categories) if category.lower() == wanted]
    if len(hits) == 1:
        return hits[0]
    if hits:
        listed = ", ".join(str(i) for i in hits)
        raise DeconvError(f"class name {name!r} is ambiguous in {model}: it names classes {listed}; "
                          f"give the index instead")
    lowered = {category.lower(): category for category in categories}
    close = difflib.get_close_matches(wanted, list(lowered), n=5, cutoff=0.6)
    close += [c.lower() for c in categories if wanted and wanted in c.lower().split() and c.lower() not in close]
    if close:
        suggestions = ", ".join(repr(lowered[c]) for c in close[:8])
        raise DeconvError(f"unknown class {name!r} for {model}; close matches: {suggestions} "
                          f"(or give an index 0..{len(categories) - 1})")
    raise DeconvError(f"unknown class {name!r} for {model}, and no close match among its {len(categories)} "
                      f"classes; give an index 0..{len(categories) - 1}")
