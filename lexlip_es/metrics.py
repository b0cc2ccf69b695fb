"""Recall@K: the one definition behind every recall figure (training evaluation, the demo, the benchmarks).

A query's rank is the 0-based position of its first relevant item (0: the first hit is relevant); R@k is the share
of queries whose rank is below k. Ranked lists of ids become ranks with `first_relevant`; a list without a relevant
id counts as a miss at every k.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

KS = (1, 5, 10)
MISSING = sys.maxsize
"""The rank of a query none of whose relevant items was returned."""


def recall_at(ranks: Sequence[int] | npt.NDArray[np.int64], ks: Sequence[int] = KS) -> dict[str, float]:
    """{"R@k": share of ranks below k} for each k."""
    array = np.asarray(ranks, dtype=np.int64)
    if array.size == 0:
        raise ValueError("recall needs at least one query")
    return {f"R@{k}": float(np.mean(array < k)) for k in ks}


def first_relevant(found: Sequence[str], relevant: Collection[str]) -> int:
    """The position of the first relevant id in a ranked list, MISSING when there is none."""
    return next((i for i, item in enumerate(found) if item in relevant), MISSING)


def recall_of_lists(
    found: Sequence[Sequence[str]], relevant: Sequence[Collection[str]], ks: Sequence[int] = KS
) -> dict[str, float]:
    """R@k of ranked id lists, each against its query's relevant ids."""
    return recall_at([first_relevant(f, r) for f, r in zip(found, relevant, strict=True)], ks)
