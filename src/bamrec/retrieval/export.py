"""``bamrec export``: a trained run as files a serving stack reads without bamrec's training code.

An export directory holds::

    manifest.json           format, the run (path + sha256 of config.json, model.safetensors,
                            item_map.json), its resolved config, dataset record, index build
                            parameters, sha256 of every exported file, ONNX check, versions
    item_vectors.npy        float32 [N, D]: the item table without the padding row (row r-1 = item row r)
    items.parquet           row (1..N), item (original id), vector (float32[D])
    index.faiss, index.json the faiss index over the items (flat, hnsw or ivf) and its build parameters
    user_interests.npy      float32 [U, K, D]: interests of every user from the last seq_len items
    users.parquet           row (1..U), user (original id), history_length
    user_interests.parquet  user, interest (0..K-1), vector (float32[D]); one line per user and interest
    extractor.onnx          (--onnx) the interest extractor: items int64 [B, L], mask bool [B, L]
                            -> interests float32 [B, K, D], L = the run's seq_len, B dynamic

``open_export`` refuses an export whose run changed after it was written (a retrained or
overwritten run: any of the run's three files has another checksum) or whose own files were
altered, with one line saying which file differs. Users' vectors are computed and written in chunks
of ``user_batch_size``, so memory stays bounded by the chunk, not the user count.

ONNX: the extractor is exported with the TorchScript-based exporter (``dynamo=False``), which
traces the eval-mode forward: MIND's deterministic evaluation routing is part of the graph, and
the trace's shape-dependent branches (ComiRec-SA's item-table path) are exact rewrites of each
other. Every export is checked: onnxruntime's interests on a sample of real users must match torch's
within ``ONNX_RTOL`` / ``ONNX_ATOL`` (``np.allclose``); the largest difference is recorded.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bamrec import files, locks
from bamrec.errors import BamrecError, RunDirError

EXPORT_FORMAT = "bamrec-export/1"
MANIFEST_FILE = "manifest.json"
RUN_FILES = ("config.json", "model.safetensors", "item_map.json")
ONNX_FILE = "extractor.onnx"
# Every file an export writes (what a failed export removes again).
EXPORT_FILES = ("item_vectors.npy", "items.parquet", "index.faiss", "index.json", "user_interests.npy", "users.parquet",
                "user_interests.parquet", ONNX_FILE, MANIFEST_FILE)
ONNX_RTOL = 1e-4  # relative tolerance of onnxruntime's interests against torch's (float32)
ONNX_ATOL = 1e-5  # absolute tolerance
ONNX_CHECK_USERS = 256  # users whose interests are compared at export


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def run_checksums(run_dir: str | Path) -> dict[str, str]:
    """sha256 of the run files that define a model (config, weights, item map)."""
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise RunDirError(f"{run_dir} is not a complete run directory (missing {', '.join(missing)})")
    return {name: sha256_file(run_dir / name) for name in RUN_FILES}


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export directory (has a manifest of the export format)."""
    manifest = Path(path) / MANIFEST_FILE
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == EXPORT_FORMAT
    except (json.JSONDecodeError, AttributeError):
        return False


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    if out.exists() and locks.contents(out):
        if not overwrite:
            raise RunDirError(f"export directory {out} already exists; pass --overwrite to replace it")
        if not is_export(out) and not (out / "index.faiss").exists():
            raise RunDirError(f"{out} is not an export directory; refusing to overwrite it")
        for child in locks.contents(out):  # not the lock this process holds
            if child.is_file():
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def id_array(ids: Any) -> Any:
    """A pyarrow array of original ids (int64 when they are all integers, else strings)."""
    import pyarrow as pa

    values = list(ids)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return pa.array(np.asarray(values, dtype=np.int64))
    return pa.array([str(v) for v in values], type=pa.string())


def _vector_array(vectors: np.ndarray) -> Any:
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[-1])


def export_run(run: Any, out: str | Path, *, index: str = "flat", onnx: bool = False, overwrite: bool = False,
               index_params: dict[str, Any] | None = None, user_batch_size: int = 1024,
               data: str | Path | None = None) -> dict[str, Any]:
    """Write the export of ``run`` (a ``bamrec.api.Run``) to ``out``; returns the manifest."""
    out = Path(out)
    checksums_before = run_checksums(run.path)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    with locks.write_lock(out, "bamrec export"):  # a second export to --out is refused before it removes anything
        _prepare_out(out, overwrite)
        try:
            return _write_export(run, out, index, onnx, index_params, user_batch_size, data, checksums_before)
        except BaseException:
            # A full disk, Ctrl-C or a failed check: no half export (and no temporary file) is left behind.
            for name in EXPORT_FILES:
                (out / name).unlink(missing_ok=True)
                files.temporary_of(out / name).unlink(missing_ok=True)
            raise


def _write_export(run: Any, out: Path, index: str, onnx: bool, index_params: dict[str, Any] | None,
                  user_batch_size: int, data: str | Path | None, checksums_before: dict[str, str]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bamrec.data.split import gather_windows
    from bamrec.retrieval.index import build_index
    from bamrec.retrieval.service import module_interest_fn
    from bamrec.rundir.layout import versions

    model = run.model.eval()
    with torch.inference_mode():
        table = model.item_embeddings().detach()
    device = table.device
    table = table.cpu().float()  # [N + 1, D]
    items = table[1:].numpy()  # [N, D]
    with files.atomic_write(out / "item_vectors.npy") as handle:
        np.save(handle, items)
    with files.atomic_write(out / "items.parquet") as handle:
        pq.write_table(pa.table({"row": pa.array(np.arange(1, len(items) + 1, dtype=np.int64)),
                                 "item": id_array(run.item_ids[1:]), "vector": _vector_array(items)}), handle)

    item_index = build_index(table, index, **(index_params or {}))
    index_record = item_index.save(out)

    dataset = run.dataset(data)
    num_users, seq_len = dataset.num_users, run.config.model.seq_len
    interest_fn = module_interest_fn(model)
    user_ids = dataset.user_ids
    offsets = torch.from_numpy(dataset.offsets)
    flat_items = torch.from_numpy(dataset.items)
    num_interests, dim = model.num_interests, items.shape[1]
    vectors = _preallocated_memmap(out / "user_interests.npy", (num_users, num_interests, dim))
    users_schema = pa.schema([("row", pa.int64()), ("user", id_array(user_ids[:1].tolist()).type),
                              ("history_length", pa.int64())])
    long_schema = pa.schema([("user", users_schema.field("user").type), ("interest", pa.int16()),
                             ("vector", pa.list_(pa.float32(), dim))])
    with files.atomic_write(out / "users.parquet") as users_file, \
            files.atomic_write(out / "user_interests.parquet") as interests_file, \
            pq.ParquetWriter(users_file, users_schema) as users_writer, \
            pq.ParquetWriter(interests_file, long_schema) as interests_writer:
        for lo in range(0, num_users, user_batch_size):  # chunks bound memory; each chunk is batched
            hi = min(lo + user_batch_size, num_users)
            starts, ends = offsets[lo:hi], offsets[lo + 1:hi + 1]
            history, mask = gather_windows(flat_items, starts, ends, seq_len)  # [B, L]
            chunk = interest_fn(history.to(device), mask.to(device)).detach().cpu().float().numpy()  # [B, K, D]
            vectors[lo:hi] = chunk
            ids = id_array(user_ids[lo:hi].tolist())
            users_writer.write_table(pa.table({"row": pa.array(np.arange(lo + 1, hi + 1, dtype=np.int64)),
                                               "user": ids, "history_length": pa.array((ends - starts).numpy())},
                                              schema=users_schema))
            repeat = np.repeat(np.arange(hi - lo), num_interests)
            interests_writer.write_table(pa.table({
                "user": ids.take(pa.array(repeat)),
                "interest": pa.array(np.tile(np.arange(num_interests, dtype=np.int16), hi - lo)),
                "vector": _vector_array(chunk.reshape(-1, dim))}, schema=long_schema))
    vectors.flush()
    del vectors

    onnx_record = None
    if onnx:  # traced on the CPU (the graph is device-independent); a copy, so the run's model stays put
        cpu_model = model if device.type == "cpu" else copy.deepcopy(model).cpu()
        onnx_record = export_onnx(cpu_model, seq_len, out / ONNX_FILE, dataset=dataset)

    if run_checksums(run.path) != checksums_before:
        raise RunDirError(f"run {run.path} changed while it was being exported; export it again")
    written = sorted(p.name for p in locks.contents(out) if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {
        "format": EXPORT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": {"path": str(Path(run.path).resolve()), "checksums": checksums_before},
        "config": run.record.get("config"),
        "dataset": {key: value for key, value in run.record.get("dataset", {}).items() if key != "stats"},
        "shapes": {"num_items": len(items), "num_users": num_users, "num_interests": num_interests,
                   "dim": dim, "seq_len": seq_len},
        "index": index_record,
        "onnx": onnx_record,
        "files": {name: sha256_file(out / name) for name in written},
        "versions": versions(),
    }
    # The manifest appears last (atomically): a half-written export has none.
    files.write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _preallocated_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A float32 ``.npy`` memmap whose blocks are reserved first: on a full disk a memmap write does not
    fail, the process dies of SIGBUS; reserving makes it an ENOSPC here, reported in one line."""
    vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    with files.disk_full_as_one_line(path), open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.path.getsize(path))
    return vectors


def open_export(path: str | Path, verify_files: bool = True) -> dict[str, Any]:
    """The manifest of export ``path``, after refusing stale or altered exports (one-line RunDirError)."""
    path = Path(path)
    if not is_export(path):
        raise RunDirError(f"{path} is not a bamrec export (no {MANIFEST_FILE} of format {EXPORT_FORMAT})")
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    run_dir = Path(manifest["run"]["path"])
    if not run_dir.is_dir():
        raise RunDirError(f"export {path} was made from run {run_dir}, which no longer exists")
    current = run_checksums(run_dir)
    changed = [name for name in RUN_FILES if current.get(name) != manifest["run"]["checksums"].get(name)]
    if changed:
        raise RunDirError(f"export {path} is stale: run {run_dir} changed after it was exported "
                          f"({', '.join(changed)} differ); run bamrec export again")
    if verify_files:
        for name, digest in manifest["files"].items():
            file = path / name
            if not file.is_file() or sha256_file(file) != digest:
                raise RunDirError(f"export {path} is damaged: {name} is missing or was altered; run bamrec export again")
    return manifest


def export_onnx(model: torch.nn.Module, seq_len: int, out: str | Path, dataset: Any = None) -> dict[str, Any]:
    """Write ``model``'s eval-mode interest extractor as ONNX and check it against torch on real users."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # pragma: no cover - part of the `onnx` extra
        raise BamrecError("ONNX export needs onnx and onnxruntime: pip install 'bamrec[onnx]'") from None
    model = model.eval()
    history, mask = _check_batch(model, seq_len, dataset)
    out = Path(out)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches (see the module docstring)
        graph = io.BytesIO()  # then written atomically
        torch.onnx.export(model, (history[:2], mask[:2]), graph, input_names=["items", "mask"],
                          output_names=["interests"], opset_version=17, dynamo=False,
                          dynamic_axes={"items": {0: "batch"}, "mask": {0: "batch"}, "interests": {0: "batch"}})
    files.write_bytes(out, graph.getvalue())
    check = check_onnx(model, out, history, mask)
    if not check["within_tolerance"]:
        raise BamrecError(f"the ONNX extractor differs from torch by {check['max_abs_diff']:.3g} "
                          f"(> rtol {ONNX_RTOL}, atol {ONNX_ATOL}); not exported")
    return check


def _check_batch(model: torch.nn.Module, seq_len: int, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories ``[B, L]`` to trace and check with: real users when a dataset is given, else random."""
    from bamrec.data.split import gather_windows

    if dataset is not None and dataset.num_users >= 2:
        users = np.linspace(0, dataset.num_users - 1, min(ONNX_CHECK_USERS, dataset.num_users)).astype(np.int64)
        # Longest first, so the traced example has no padding-only shortcut; the rest varies in length.
        starts, ends = torch.from_numpy(dataset.offsets[users]), torch.from_numpy(dataset.offsets[users + 1])
        order = torch.argsort(ends - starts, descending=True)
        return gather_windows(torch.from_numpy(dataset.items), starts[order], ends[order], seq_len)
    generator = torch.Generator().manual_seed(0)
    history = torch.randint(1, model.num_items + 1, (16, seq_len), generator=generator)
    lengths = torch.randint(1, seq_len + 1, (16,), generator=generator)
    lengths[0] = seq_len
    mask = torch.arange(seq_len).unsqueeze(0) < lengths.unsqueeze(1)
    return history * mask, mask


def check_onnx(model: torch.nn.Module, onnx_path: str | Path, history: torch.Tensor, mask: torch.Tensor
               ) -> dict[str, Any]:
    """Compare onnxruntime's interests with torch's on ``history``/``mask`` ``[B, L]``."""
    run = onnx_interest_fn(onnx_path)
    with torch.inference_mode():
        expected = model.eval()(history, mask).float().numpy()  # [B, K, D]
    got = run(history, mask).numpy()
    diff = float(np.abs(got - expected).max()) if got.size else 0.0
    return {"file": Path(onnx_path).name, "checked_users": int(history.shape[0]), "max_abs_diff": diff,
            "rtol": ONNX_RTOL, "atol": ONNX_ATOL,
            "within_tolerance": bool(np.allclose(got, expected, rtol=ONNX_RTOL, atol=ONNX_ATOL))}


def onnx_interest_fn(onnx_path: str | Path) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``history [B, L], mask [B, L] -> interests [B, K, D]`` computed by onnxruntime (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def interests(history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feeds = {"items": history.cpu().numpy().astype(np.int64), "mask": mask.cpu().numpy().astype(bool)}
        return torch.from_numpy(session.run(["interests"], feeds)[0])

    return interests
