"""Downloads into a local cache: resumable (``.part`` file + HTTP Range), checksum-verified.

Files land in ``$BAMREC_HOME/downloads/...`` (default ``~/.cache/bamrec``). A download writes to
``<file>.part`` and renames it into place only once complete and verified, so the cache never holds
a partial or corrupt file under its final name; an interrupted download resumes from the
``.part`` file with a Range request. Only the standard library's urllib is used.

The base URL of every registered dataset can be replaced by a mirror (``BAMREC_MIRROR`` or the
``mirror`` argument) that serves the same layout, e.g. a local copy for machines without internet.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bamrec.errors import DataError

ENV_HOME = "BAMREC_HOME"
ENV_MIRROR = "BAMREC_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT = 60.0  # seconds without data before a request gives up
# What to do when the publisher cannot be reached (offline machines, firewalls, a server down).
OFFLINE_HINT = (f"check the network, set {ENV_MIRROR}, or download the file yourself and pass "
                "--from PATH (a folder, the zip archive or the file)")


def cache_home() -> Path:
    """The bamrec cache folder: ``$BAMREC_HOME`` or ``~/.cache/bamrec``."""
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() if home else Path.home() / ".cache" / "bamrec"


def resolve_url(base_url: str, relpath: str, mirror: str | None = None) -> str:
    """``relpath`` under ``mirror`` (argument, else ``$BAMREC_MIRROR``), else under ``base_url``."""
    base = mirror or os.environ.get(ENV_MIRROR) or base_url
    return base.rstrip("/") + "/" + relpath.lstrip("/")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_md5(url: str, timeout: float = _TIMEOUT) -> str | None:
    """The MD5 a publisher lists at ``url`` (GroupLens' ``<zip>.md5``), or None where there is none.

    Accepts ``md5sum`` output, BSD ``MD5 (file) = hex`` and a bare hex digest.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read(4096).decode("ascii", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise DataError(f"cannot fetch checksum {url}: HTTP {exc.code} {exc.reason}; {OFFLINE_HINT}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"cannot fetch checksum {url}: {_reason(exc)}; {OFFLINE_HINT}") from None
    found = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if found is None:
        raise DataError(f"checksum file {url} holds no MD5 digest")
    return found.group(0).lower()


def download(url: str, dest: str | Path, *, md5: str | None = None, progress: bool = True,
             timeout: float = _TIMEOUT) -> Path:
    """Download ``url`` to ``dest`` unless it is already there; return ``dest``.

    Resumes from ``dest.part`` when a previous attempt was interrupted (HTTP Range; a server that
    ignores Range makes it start over). With ``md5`` the finished file is verified; on a mismatch
    the partial file is deleted and nothing is stored under ``dest``.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_to_part(url, part, progress, timeout)
    if md5 is not None:
        actual = file_digest(part, "md5")
        if actual != md5.lower():
            part.unlink()
            raise DataError(f"checksum mismatch for {url}: expected MD5 {md5.lower()}, got {actual}; "
                            "the download was deleted, run the command again (or check the mirror)")
    os.replace(part, dest)
    return dest


def _fetch_to_part(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (all of it when there is no usable ``part``)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is not a prefix we can extend: start over
            part.unlink()
            return _fetch_to_part(url, part, progress, timeout)
        hint = ("check the dataset name and category, or use --from with a local copy" if exc.code == 404
                else OFFLINE_HINT)
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; {hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"cannot download {url}: {_reason(exc)}; {OFFLINE_HINT}") from None
    with response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        received, broken = _copy(response, part, "ab" if resumed else "wb", have, total, url, progress)
    if broken or (total is not None and received < total):
        size = f"{received} of {total}" if total is not None else f"{received}"
        raise DataError(f"download of {url} stopped after {size} bytes; run the same command again to resume")


def _copy(response, part: Path, mode: str, have: int, total: int | None, url: str,
          progress: bool) -> tuple[int, bool]:
    """Stream the response body into ``part``; return (bytes in ``part``, whether the transfer broke)."""
    from tqdm import tqdm

    received, broken = have, False
    bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
               desc=url.rsplit("/", 1)[-1], disable=not progress, file=sys.stderr, leave=False)
    with open(part, mode) as out, bar:
        while True:
            try:
                block = response.read(_CHUNK)
            except (OSError, ValueError, http.client.HTTPException):  # reset, timeout, IncompleteRead
                broken = True
                break
            if not block:
                break
            out.write(block)
            received += len(block)
            bar.update(len(block))
    return received, broken


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
