"""Registered public datasets: where their raw files live, online and in a local copy.

- ``ml-1m``, ``ml-100k``: MovieLens (GroupLens; F. M. Harper and J. A. Konstan, ACM TiiS 2015),
  downloaded as the official zip, MD5-verified against the ``<zip>.md5`` GroupLens publishes.
- ``amazon2023``: Amazon Reviews 2023 (McAuley Lab; Hou et al., 2024), one ``--category``. The
  default is the 5-core ``benchmark/5core/rating_only/{Category}.csv.gz``; ``fmt="jsonl"`` takes
  the raw reviews ``raw/review_categories/{Category}.jsonl.gz`` instead (large: it is streamed).
  Items are ``parent_asin``, users ``user_id``, timestamps in milliseconds. No checksums are published.

The terms of these datasets forbid redistribution: bamrec downloads them, it never ships them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bamrec.data import download
from bamrec.data.sources import RawFile, infer_format
from bamrec.errors import ConfigError, DataError

Echo = Callable[[str], None]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"
AMAZON2023_URL = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023"
AMAZON2023_CATEGORIES = (
    "All_Beauty", "Amazon_Fashion", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Baby_Products",
    "Beauty_and_Personal_Care", "Books", "CDs_and_Vinyl", "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food",
    "Handmade_Products", "Health_and_Household", "Health_and_Personal_Care", "Home_and_Kitchen",
    "Industrial_and_Scientific", "Kindle_Store", "Magazine_Subscriptions", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Software",
    "Sports_and_Outdoors", "Subscription_Boxes", "Tools_and_Home_Improvement", "Toys_and_Games",
    "Video_Games", "Unknown",
)
_AMAZON_COLUMNS = ("user_id", "parent_asin", "timestamp")


@dataclass(frozen=True)
class RawLayout:
    """Where a registered dataset's interactions file is, remotely and in a local copy."""

    remote: str  # path below the base URL of the file to download (an archive, or the file itself)
    member: str | None  # the interactions file inside that archive; None when it is the file
    fmt: str  # reader format, one of bamrec.data.sources.FORMATS
    columns: tuple[str, str, str] | None  # user, item, time columns for table formats
    md5_suffix: str | None  # the publisher's checksum file is remote + this suffix
    local_names: tuple[str, ...]  # what to look for in a --from directory, in order


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset."""

    name: str
    description: str
    base_url: str
    formats: tuple[str, ...]  # raw formats it is published in; the first is the default
    needs_category: bool

    def layout(self, category: str | None, fmt: str | None = None) -> RawLayout:
        """The raw file layout for ``category`` (amazon2023) in format ``fmt`` (default: the first)."""
        fmt = fmt or self.formats[0]
        if fmt not in self.formats:
            raise ConfigError(f"{self.name} comes as {', '.join(self.formats)}, not {fmt!r}")
        if self.needs_category:
            if not category:
                raise ConfigError(f"{self.name} needs --category NAME, e.g. Video_Games or Movies_and_TV")
            return _amazon_layout(category, fmt)
        if category:
            raise ConfigError(f"--category only applies to amazon2023, not {self.name}")
        return _grouplens_layout(self.name)


def _grouplens_layout(name: str) -> RawLayout:
    data, fmt = ("ratings.dat", "movielens-dat") if name == "ml-1m" else ("u.data", "movielens-udata")
    member = f"{name}/{data}"
    return RawLayout(f"{name}.zip", member, fmt, None, ".md5", (data, member, f"{name}.zip"))


def _amazon_layout(category: str, fmt: str) -> RawLayout:
    if fmt == "csv":
        remote = f"benchmark/5core/rating_only/{category}.csv.gz"
        names = (f"{category}.csv.gz", f"{category}.csv", remote)
    else:
        remote = f"raw/review_categories/{category}.jsonl.gz"
        names = (f"{category}.jsonl.gz", f"{category}.jsonl", remote)
    return RawLayout(remote, None, fmt, _AMAZON_COLUMNS, None, names)


DATASETS: dict[str, DatasetSpec] = {
    "ml-1m": DatasetSpec("ml-1m", "MovieLens 1M: 6,040 users, 3,706 movies, 1,000,209 ratings (GroupLens)",
                         GROUPLENS_URL, ("movielens-dat",), False),
    "ml-100k": DatasetSpec("ml-100k", "MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings (GroupLens)",
                           GROUPLENS_URL, ("movielens-udata",), False),
    "amazon2023": DatasetSpec(
        "amazon2023", "Amazon Reviews 2023, one --category: 5-core ratings (csv, default) or raw reviews (jsonl)",
        AMAZON2023_URL, ("csv", "jsonl"), True,
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or a ConfigError listing the registered ones."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: registered datasets are {', '.join(DATASETS)}")
    return DATASETS[name]


def raw_file(
    name: str,
    *,
    category: str | None = None,
    fmt: str | None = None,
    from_path: str | Path | None = None,
    mirror: str | None = None,
    progress: bool = True,
    echo: Echo | None = None,
) -> tuple[RawFile, RawLayout]:
    """The interactions file of registered dataset ``name``, and its layout.

    With ``from_path`` it is found in a local directory, zip archive or file; without, it is
    downloaded (once) into the cache and verified against the publisher's checksum.
    """
    spec = get_dataset(name)
    if from_path is not None:
        from_path = Path(from_path)
        if fmt is None and spec.needs_category and from_path.is_file() and not zipfile.is_zipfile(from_path):
            fmt = infer_format(from_path.name)
        layout = spec.layout(category, fmt)
        if fmt is None and from_path.is_dir() and len(spec.formats) > 1:
            layout = _first_present_layout(spec, category, from_path) or layout
        return locate(layout, from_path), layout
    layout = spec.layout(category, fmt)
    if spec.needs_category and category not in AMAZON2023_CATEGORIES:
        raise ConfigError(f"unknown {spec.name} category {category!r}: "
                          f"choose one of {', '.join(AMAZON2023_CATEGORIES)}")
    return fetch(spec, layout, mirror=mirror, progress=progress, echo=echo), layout


def _first_present_layout(spec: DatasetSpec, category: str | None, folder: Path) -> RawLayout | None:
    for fmt in spec.formats:
        layout = spec.layout(category, fmt)
        if any((folder / n).is_file() for n in layout.local_names):
            return layout
    return None


def locate(layout: RawLayout, from_path: Path) -> RawFile:
    """Find the interactions file in a local directory, zip archive or the file itself."""
    if not from_path.exists():
        raise DataError(f"--from {from_path} does not exist")
    if from_path.is_dir():
        for name in layout.local_names:
            candidate = from_path / name
            if candidate.is_file():
                return _in_archive(layout, candidate) if zipfile.is_zipfile(candidate) else RawFile(candidate)
        raise DataError(f"{from_path} holds none of {', '.join(layout.local_names)}; "
                        "point --from at the folder or archive that has it")
    if zipfile.is_zipfile(from_path):
        return _in_archive(layout, from_path)
    return RawFile(from_path)


def _in_archive(layout: RawLayout, archive: Path) -> RawFile:
    wanted = layout.member or Path(layout.remote).name
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if not m.endswith("/")]
    if wanted in members:
        return RawFile(archive, wanted)
    same_name = [m for m in members if Path(m).name == Path(wanted).name]
    if len(same_name) == 1:
        return RawFile(archive, same_name[0])
    shown = ", ".join(members[:10]) + (" ..." if len(members) > 10 else "")
    raise DataError(f"archive {archive} has no {wanted} (it holds: {shown})")


def fetch(spec: DatasetSpec, layout: RawLayout, *, mirror: str | None = None, progress: bool = True,
          echo: Echo | None = None) -> RawFile:
    """Download the layout's file into the cache (unless already there) and return it."""
    dest = download.cache_home() / "downloads" / spec.name / layout.remote
    if not dest.is_file():
        url = download.resolve_url(spec.base_url, layout.remote, mirror)
        md5 = None
        if layout.md5_suffix is not None:
            md5 = download.fetch_md5(url + layout.md5_suffix)
            if md5 is None and echo is not None:
                echo(f"no checksum at {url + layout.md5_suffix}: the download is not verified")
        if echo is not None:
            echo(f"downloading {url} to {dest}")
        download.download(url, dest, md5=md5, progress=progress)
    return _in_archive(layout, dest) if layout.member is not None else RawFile(dest)


ITEM_FILES = {"ml-1m": "movies.dat", "ml-100k": "u.item"}  # the presets' item metadata, beside the ratings


def item_file(name: str, ratings: RawFile) -> RawFile | None:
    """The item metadata file of registered dataset ``name`` beside its ratings file ``ratings`` (the
    same archive folder, or the same directory), or None when the dataset has none or it is absent."""
    wanted = ITEM_FILES.get(name)
    if wanted is None:
        return None
    if ratings.member is not None:
        member = str(Path(ratings.member).with_name(wanted))
        with zipfile.ZipFile(ratings.path) as zf:
            return RawFile(ratings.path, member) if member in zf.namelist() else None
    candidate = ratings.path.with_name(wanted)
    return RawFile(candidate) if candidate.is_file() else None
