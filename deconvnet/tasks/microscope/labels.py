"""Image labels for the microscope: from a TSV file, from sub-folder names, or none.

A unit's selectivity is the share of its top-k images that carry its most common label:
1.0 when all of them share one label, 1/k when no two do (None without labels).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Sequence

from ...errors import DeconvError


def read_labels(names: Sequence[str], labels: str | Path | None, from_folders: bool) -> dict[str, str]:
    """A label for each image name (relative posix path) that has one.

    ``labels`` is a TSV file of ``file<TAB>label`` lines; a header line whose first field is
    ``file`` names the columns, and then the ``label`` (or else ``class_name``) column is used.
    ``file`` is matched against the relative path, then the file name.
    Without it and with ``from_folders``, an image's label is its sub-folder's name when every
    image sits in a sub-folder.

    >>> read_labels(["cats/a.jpg", "dogs/b.jpg"], None, True)
    {'cats/a.jpg': 'cats', 'dogs/b.jpg': 'dogs'}
    """
    if labels is None:
        if from_folders and names and all("/" in name and not name.startswith("/") for name in names):
            return {name: name.rsplit("/", 2)[-2] for name in names}
        return {}
    path = Path(labels)
    if not path.is_file():
        raise FileNotFoundError(f"no labels file at {path}: give a TSV file with lines 'file<TAB>label'")
    table: dict[str, str] = {}
    column = 1
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if number == 1 and row and row[0] == "file":
                column = next((row.index(name) for name in ("label", "class_name") if name in row), 1)
                continue
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if len(row) <= column:
                raise DeconvError(f"{path}, line {number}: expected 'file<TAB>label', received {row!r}")
            table[row[0].strip()] = row[column].strip()
    by_basename = {Path(key).name: value for key, value in table.items()}
    found = {name: table.get(name, by_basename.get(name.rsplit("/", 1)[-1])) for name in names}
    return {name: label for name, label in found.items() if label is not None}


def selectivity(labels: Sequence[str | None]) -> float | None:
    """Share of the labels equal to the most common one (unlabelled entries count against it).

    >>> selectivity(["cat", "cat", "dog", None])
    0.5
    """
    known = [label for label in labels if label is not None]
    if not known:
        return None
    return Counter(known).most_common(1)[0][1] / len(labels)
