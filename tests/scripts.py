"""Loading a script of the repository that is not part of the package (benchmarks/, experiments/) as a
module, so that tests call its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """The module defined by the file ``path`` (its name: ``name``, else the file's stem), freshly executed."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
