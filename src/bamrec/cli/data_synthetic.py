"""`bamrec data synthetic`: write a planted-interest dataset with its ground truth.

The ``data`` command group is created by ``bamrec.cli.data``, which calls :func:`register` with its
sub-parsers. Flags map 1:1 onto :class:`bamrec.data.synthetic.SyntheticConfig` fields.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from bamrec.data.synthetic import SyntheticConfig

_HELP = {
    "users": "users (U)",
    "items": "items (N)",
    "topics": "latent topics the items are grouped into",
    "interests_per_user": "planted topics per user: one dominant, the rest minor",
    "imbalance": "Zipf exponent of a user's interest weights (0 = balanced, larger = one interest dominates more)",
    "item_skew": "Zipf exponent of item popularity inside a topic (0 = uniform)",
    "session_len": "mean number of consecutive items from one topic",
    "noise": "probability that an interaction is a random item off the user's topics",
    "min_len": "shortest sequence",
    "max_len": "longest sequence (each topic needs at least this many items)",
    "seed": "random seed",
}


def register(data_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synthetic`` command to the ``data`` group."""
    parser = data_subparsers.add_parser(
        "synthetic",
        help="generate a planted-interest dataset (one dominant, several minor interests per user)",
        description="Generate a prepared dataset whose users have planted interests of unequal weight, "
        "with the ground truth beside it (truth_*.npy) for the interest-balance diagnostics.",
    )
    parser.add_argument("--out", required=True, help="output directory (a prepared dataset)")
    defaults = SyntheticConfig()
    for f in fields(SyntheticConfig):
        default = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(default),
            default=default,
            help=f"{_HELP[f.name]} (default: {default})",
        )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate and save; print where it went and what it holds."""
    from bamrec.data.synthetic import write_synthetic

    config = SyntheticConfig(**{f.name: getattr(args, f.name) for f in fields(SyntheticConfig)})
    out, dataset = write_synthetic(args.out, config, overwrite=args.overwrite)
    stats = dataset.stats()
    truth = dataset.manifest["truth"]
    print(
        f"wrote {out}: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions "
        f"(lengths {stats['min']}-{stats['max']}); test targets from the dominant interest "
        f"{truth['test_target_dominant']:.1%}, a minor interest {truth['test_target_minor']:.1%}, "
        f"noise {truth['test_target_unplanted']:.1%}"
    )
    return 0
