"""Synthetic interaction logs shared by the data tests (the Parquet-parts readers of both engines)."""

from __future__ import annotations

import numpy as np
import polars as pl


def parts_log(rows: int, seed: int) -> pl.DataFrame:
    """``rows`` interactions of 39 integer users and 59 text items ("sku7"), with many tied timestamps
    (file order must break them) and a column that preparation never reads."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "uid": rng.integers(1, 40, rows),
        "iid": [f"sku{v}" for v in rng.integers(1, 60, rows)],
        "ts": rng.integers(0, 50, rows),
        "rating": rng.random(rows),
    })
