"""Access to the original BaM code (``BAM_ORIGINAL_SRC``) for the fidelity tests.

The original is run, never copied: its modules are imported from the folder the variable names and
removed from ``sys.modules`` again, so their generic names (``utils``, ``MIND``) shadow nothing.
Without the variable (as in CI) every test that needs it is skipped with the reason, and the summary
of the run says so (``pytest_terminal_summary`` in tests/conftest.py); ``make test-fidelity`` sets
``BAMREC_REQUIRE_ORIGINAL=1``, under which a missing or incomplete original fails instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ORIGINAL_MODULES = ("SSLoss", "BasicModel", "ComiRec", "MIND", "utils")
SKIP_REASON = ("BAM_ORIGINAL_SRC is not set: the fidelity tests run the original BaM code next to bamrec "
               "(make test-fidelity BAM_ORIGINAL_SRC=/path/to/original/src; see docs/fidelity.md)")


def _skip_or_fail(reason: str) -> None:
    """Skip, unless the run asked for the fidelity suite (``make test-fidelity``): then fail."""
    if os.environ.get("BAMREC_REQUIRE_ORIGINAL") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def original_src() -> Path | None:
    src = os.environ.get("BAM_ORIGINAL_SRC")
    return Path(src) if src else None


@pytest.fixture(scope="session")
def original() -> SimpleNamespace:
    """The original's modules: ``.ComiRec``, ``.MIND`` (classes), ``.utils`` (module), ``.src`` (folder)."""
    src = original_src()
    if src is None:
        _skip_or_fail(SKIP_REASON)
    if not all((src / f"{name}.py").is_file() for name in ORIGINAL_MODULES + ("main",)):
        _skip_or_fail(f"BAM_ORIGINAL_SRC={src} does not hold the original's {', '.join(ORIGINAL_MODULES)}.py and main.py")
    saved = {name: sys.modules.pop(name) for name in ORIGINAL_MODULES if name in sys.modules}
    argv = sys.argv
    sys.argv = [argv[0], "--device", "cpu"]  # in case a module parses flags at import
    sys.path.insert(0, str(src))
    try:
        modules = {name: importlib.import_module(name) for name in ORIGINAL_MODULES}
    finally:
        sys.argv = argv
        sys.path.remove(str(src))
        for name in ORIGINAL_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return SimpleNamespace(ComiRec=modules["ComiRec"].ComiRec, MIND=modules["MIND"].MIND, utils=modules["utils"],
                           src=src)
