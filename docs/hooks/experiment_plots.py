"""mkdocs hook: the docs show the plots `bamrec experiment` writes (experiments/**/plots/*.png) where
they are, with no copy under docs/.

A page links a plot by its path in the repository relative to docs/, e.g.
``![](../experiments/fidelity/ml-100k/plots/recall20-standard.png)``, which is right when the page is
read on its own (on GitHub, in an editor). mkdocs only knows files under docs/, so this hook adds every
experiment plot to the site at ``experiments/...`` and points those links there.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(((?:\.\./)+)experiments/")


def on_files(files, config):
    for plot in sorted((ROOT / "experiments").glob("**/plots/*.png")):
        uri = plot.relative_to(ROOT).as_posix()
        if not any(part.startswith(".") or part == "runs" for part in plot.relative_to(ROOT).parts):
            files.append(File.generated(config, uri, abs_src_path=str(plot)))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")  # a page in a sub-folder of docs/ climbs one more level

    def to_site(match: re.Match) -> str:
        if match.group(1).count("../") != depth + 1:
            return match.group(0)  # not the repository's experiments/ folder
        return "](" + "../" * depth + "experiments/"

    return LINK.sub(to_site, markdown)
