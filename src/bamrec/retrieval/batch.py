"""``bamrec recommend RUN --all-users --out recs.parquet``: top-k of every user for offline pipelines.

Users are processed in chunks of ``user_batch_size`` (one forward pass and one multi-interest
search each) and every chunk is appended to the Parquet file as its own row group, so memory is
bounded by the chunk whatever the number of users. One line per (user, rank):

    user      original user id (int64 or string, as the dataset stores it)
    rank      1-based position, int32
    item      original item id
    score     max over interests of m_k . e_i, float32
    interest  the interest that scored the item highest, int16
    title     the item's title, when the dataset's item metadata has one (string, null where missing)

A user with fewer than ``k`` rankable items (``exclude_history`` on a tiny catalogue) has fewer lines.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bamrec import files
from bamrec.errors import RunDirError
from bamrec.evaluation.ranking import check_positive


def write_all_users(candidates: Any, out: str | Path, k: int, *, exclude_history: bool = True,
                    user_batch_size: int = 1024, overwrite: bool = False) -> dict[str, Any]:
    """Write every user's top-``k`` from ``candidates`` (a ``Candidates``) to Parquet ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bamrec.retrieval.export import id_array

    k = candidates.check_k(k)
    batch = check_positive("user_batch_size", user_batch_size)
    out = Path(out)
    if out.exists() and not overwrite:
        raise RunDirError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset = candidates.dataset()
    item_ids = id_array(candidates.item_ids[1:])  # position row - 1
    user_ids = dataset.user_ids
    metadata = candidates.item_metadata()
    titles = None
    fields = [("user", id_array(user_ids[:1].tolist()).type), ("rank", pa.int32()),
              ("item", item_ids.type), ("score", pa.float32()), ("interest", pa.int16())]
    if metadata is not None and metadata.has_title:
        titles = pa.array([None if t is None else str(t) for t in metadata.values["title"]], pa.string())  # row - 1
        fields.append(("title", pa.string()))
    schema = pa.schema(fields)
    start, lines = time.perf_counter(), 0
    # Atomic: a full disk, Ctrl-C or a crash leaves the old file (or none), never a half-written one.
    with files.atomic_write(out) as handle, pq.ParquetWriter(handle, schema) as writer:
        for lo in range(0, dataset.num_users, batch):
            hi = min(lo + batch, dataset.num_users)
            users = np.arange(lo + 1, hi + 1, dtype=np.int64)
            rows, scores, interest = candidates.search_users(users, k, exclude_history)  # [B, k] each
            found = rows >= 0
            user_index, place = np.nonzero(found)  # row-major: by user, then rank
            columns = {
                "user": id_array(user_ids[lo:hi].tolist()).take(pa.array(user_index)),
                "rank": pa.array((place + 1).astype(np.int32)),
                "item": item_ids.take(pa.array(rows[found] - 1)),
                "score": pa.array(scores[found].astype(np.float32)),
                "interest": pa.array(interest[found].astype(np.int16)),
            }
            if titles is not None:
                columns["title"] = titles.take(pa.array(rows[found] - 1))
            table = pa.table(columns, schema=schema)
            writer.write_table(table)
            lines += table.num_rows
    return {"users": dataset.num_users, "lines": lines, "k": k, "seconds": round(time.perf_counter() - start, 3),
            "out": str(out)}
