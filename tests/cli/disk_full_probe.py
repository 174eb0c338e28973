"""Run bamrec commands on a small tmpfs that fills up (what tests/cli/test_disk_full.py starts).

``python disk_full_probe.py SPEC.json`` runs inside its own mount namespace (``unshare -m``), where
``spec["mount"]`` is a fresh tmpfs; nothing of it is visible outside, and it disappears with the
process. The spec lists the steps; each result (exit code, stdout, stderr, the files left) goes to
``spec["result"]``, which lies outside the tmpfs.

Steps: ``{"run": [args...]}`` runs ``bamrec ARGS`` to its end; ``{"start": [args...], "wait_for": GLOB}``
starts it, waits until a file matching GLOB (under the mount) has content, fills the disk and waits for
the command's end; ``{"fill": true}`` fills the disk; ``{"free": true}`` removes the filler;
``{"list": DIR}`` records the files below DIR.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def fill(mount: Path) -> int:
    """Write a filler file until the file system refuses (ENOSPC); the bytes written."""
    written = 0
    block = b"\0" * (64 << 10)
    with open(mount / "filler", "ab", buffering=0) as handle:
        while True:
            try:
                written += handle.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return written
                block = block[: len(block) // 2]  # the last pages too


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "bamrec.cli", *args]


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    mount = Path(spec["mount"])
    results = []
    for step in spec["steps"]:
        if "run" in step:
            done = subprocess.run(command(step["run"]), capture_output=True, text=True, timeout=300)
            results.append({"rc": done.returncode, "out": done.stdout, "err": done.stderr})
        elif "start" in step:
            process = subprocess.Popen(command(step["start"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            deadline = time.monotonic() + 120
            while not any(os.path.getsize(p) for p in glob.glob(str(mount / step["wait_for"]))):
                if process.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            filled = fill(mount)
            out, err = process.communicate(timeout=300)
            results.append({"rc": process.returncode, "out": out, "err": err, "filled": filled})
        elif "fill" in step:
            results.append({"filled": fill(mount)})
        elif "free" in step:
            (mount / "filler").unlink()
            results.append({"freed": True})
        elif "list" in step:
            root = mount / step["list"]
            results.append({"files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
                            if root.exists() else None})
    Path(spec["result"]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
