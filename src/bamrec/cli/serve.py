"""`bamrec export` and `bamrec serve`: from a trained run to files and to an HTTP candidate service."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bamrec.cli import POSITIVE_INT, parse_with
from bamrec.cli.threads import add_threads_flag
from bamrec.cli.train import DEVICE, MAX_K, load_for_reading, warn_if_being_written
from bamrec.devices import DEVICE_FORM


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


PORT = parse_with(_port, "a port number from 0 to 65535")

# name, help: the defaults are bamrec.retrieval.index.IndexParams's, spelled out so that --help does not
# import torch and faiss (tests/cli check that the two agree).
_INDEX_FLAGS = (
    ("hnsw_m", "HNSW: graph links per node (default: 32)"),
    ("ef_construction", "HNSW: candidate list size while building (default: 200)"),
    ("ef_search", "HNSW: candidate list size while searching (default: 128)"),
    ("nlist", "IVF: number of k-means cells (default: 4 * sqrt(items), at most items / 39)"),
    ("nprobe", "IVF: cells searched per query (default: 16)"),
)


def _add_index_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("index build parameters (docs/serving.md)")
    for name, help_text in _INDEX_FLAGS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=POSITIVE_INT, default=None,
                           metavar="N", help=help_text)


def _index_params(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name, _ in _INDEX_FLAGS if getattr(args, name) is not None}


def _export(args: argparse.Namespace) -> int:
    from bamrec.api import load_run
    from bamrec.retrieval.export import export_run

    warn_if_being_written(args.run)
    run = load_run(args.run, device=args.device)
    manifest = export_run(run, args.out, index=args.index, onnx=args.onnx, overwrite=args.overwrite,
                          index_params=_index_params(args), data=args.data)
    if args.json:
        print(json.dumps(manifest, sort_keys=True))
        return 0
    shapes, index = manifest["shapes"], manifest["index"]
    print(f"exported {args.run} to {args.out}: {shapes['num_items']} item vectors, "
          f"{shapes['num_users']} users x {shapes['num_interests']} interests (d={shapes['dim']}), "
          f"{args.index} index built in {index['build_seconds']} s")
    if manifest["onnx"]:
        onnx = manifest["onnx"]
        print(f"ONNX extractor {onnx['file']}: max |onnxruntime - torch| = {onnx['max_abs_diff']:.3g} "
              f"on {onnx['checked_users']} users (tolerance rtol {onnx['rtol']}, atol {onnx['atol']})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from bamrec.serve.app import bind, create_app, serve

    run, index = load_for_reading(args.target, device=args.device)
    retrieval = args.retrieval or (index.params.kind if index is not None else "exact")
    limits = {"max_k": args.max_k, "max_history": args.max_history, "max_batch": args.max_batch}
    candidates = run.candidates(retrieval, index, args.data, **limits)
    # The run's name, not its path on the server: a client has no use for the server's file layout.
    info = {"run": run.path.name, "model": run.config.model.model, "retrieval": retrieval,
            "num_items": candidates.num_items, "num_interests": run.model.num_interests,
            "dim": run.model.hidden_size, "seq_len": run.config.model.seq_len, "limits": limits}
    app = create_app(candidates, info)
    sock = bind(args.host, args.port)  # a busy port is refused here, before anything says "serving"
    port = sock.getsockname()[1]
    print(f"serving {args.target} ({retrieval}) on http://{args.host}:{port} (docs at /docs)", flush=True)
    serve(app, sock, log_level=args.log_level)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write item/user vectors, a faiss index and optionally ONNX",
                              description="Export a run for serving; see docs/serving.md.")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="export directory to write")
    p.add_argument("--index", choices=("flat", "hnsw", "ivf"), default="flat", help="faiss index kind (default flat)")
    p.add_argument("--onnx", action="store_true", help="also export the interest extractor as ONNX (checked)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    p.add_argument("--data", help="dataset directory, when it moved since training")
    p.add_argument("--device", type=DEVICE, default="cpu", help=f"{DEVICE_FORM} (default: cpu)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    _add_index_flags(p)
    add_threads_flag(p)
    p.set_defaults(handler=_export)

    p = subparsers.add_parser("serve", help="HTTP candidate service over a run or an export",
                              description="Serve /recommend and /interests; see docs/serving.md.")
    p.add_argument("target", metavar="RUN_OR_EXPORT", help="run directory or export directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=PORT, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--retrieval", choices=("exact", "flat", "hnsw", "ivf"), default=None,
                   help="default: the export's index, exact for a run")
    p.add_argument("--max-k", type=POSITIVE_INT, default=MAX_K,
                   help=f"largest k a request may ask for (default: {MAX_K}; raise it for longer lists)")
    p.add_argument("--max-history", type=POSITIVE_INT, default=10_000,
                   help="longest ad-hoc history (default: 10000)")
    p.add_argument("--max-batch", type=POSITIVE_INT, default=256,
                   help="most queries in one batch request (default: 256)")
    p.add_argument("--data", help="dataset directory, when it moved since training")
    p.add_argument("--device", type=DEVICE, default="cpu", help=f"{DEVICE_FORM} (default: cpu)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default: warning)")
    add_threads_flag(p)
    p.set_defaults(handler=_serve)
