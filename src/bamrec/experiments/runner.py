"""Run an experiment's cells: skip finished ones, resume interrupted ones, run ``jobs`` at a time.

Each cell is a subprocess (``python -m bamrec.experiments JOB.json``, see ``cell``) with ``threads`` torch/OpenMP threads, so
``--jobs N`` splits the cores instead of oversubscribing them (default-threaded trainings side by side
slow each other down many times over; docs/experiments.md). Its output goes to ``runs/<cell>.log``.
After every finished cell the results (``results.json``, ``results.md``, plots) are rewritten, so
they are current whenever the runner is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import bamrec
from bamrec import files, locks
from bamrec.devices import available_cpus
from bamrec.errors import BamrecError
from bamrec.files import DiskFullError
from bamrec.experiments.cell import EXIT_INTERRUPTED, cell_file
from bamrec.experiments.spec import Cell, Experiment

POLL_S = 0.5




def default_threads(jobs: int) -> int:
    """Threads per job: the cores split evenly between the jobs, at least one each."""
    return max(1, available_cpus() // max(1, jobs))


def finished_cells(experiment: Experiment, cells_dir: Path) -> dict[str, dict]:
    """The cells of ``experiment`` whose summary exists in ``cells_dir`` with the same options."""
    done = {}
    for cell in experiment.cells:
        file = cell_file(cells_dir, cell.id)
        if file.is_file():
            try:
                record = json.loads(file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue  # a broken summary is rerun, not trusted
            if record.get("options") == cell.options:
                done[cell.id] = record
    return done


@dataclass
class RunReport:
    """What one invocation did."""

    total: int
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    disk_full: str | None = None  # the cell that found the disk full (the experiment stopped there)
    wall_s: float = 0.0


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def run_experiment(
    experiment: Experiment,
    out: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    device: str | None = None,
    runs_dir: Path | None = None,
    tensorboard: Path | None = None,
    log: Callable[[str], None] | None = None,
    on_progress: Callable[[], None] | None = None,
) -> RunReport:
    """Run every unfinished cell of ``experiment``; summaries go to ``out/cells``, runs to ``runs_dir``.

    The runner holds the locks of ``out`` and ``runs_dir`` (``bamrec.locks``) while it runs: a second
    runner on either is refused before it starts a cell; each cell holds its own run directory's."""
    if jobs < 1:
        raise BamrecError(f"--jobs must be at least 1, got {jobs}")
    runs_dir = runs_dir or out / "runs"
    with locks.write_lock(out, "bamrec experiment", flag="--out"), \
            locks.write_lock(runs_dir, "bamrec experiment", flag="--runs-dir"):
        return _run_experiment(experiment, out, jobs=jobs, threads=threads, device=device, runs_dir=runs_dir,
                               tensorboard=tensorboard, log=log, on_progress=on_progress)


def _run_experiment(experiment: Experiment, out: Path, *, jobs: int, threads: int | None, device: str | None,
                    runs_dir: Path, tensorboard: Path | None, log: Callable[[str], None] | None,
                    on_progress: Callable[[], None] | None) -> RunReport:
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    threads = threads or default_threads(jobs)
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    runs_dir.mkdir(parents=True, exist_ok=True)
    done = finished_cells(experiment, cells_dir)
    report = RunReport(total=len(experiment.cells), skipped=sorted(done))
    todo = [c for c in experiment.cells if c.id not in done]
    # Wall times per dataset: cells of one dataset cost about the same, datasets differ by 10x.
    durations: dict[str, list[float]] = {}
    for cell in experiment.cells:
        if cell.id in done and done[cell.id].get("wall_time_s"):
            durations.setdefault(cell.dataset, []).append(float(done[cell.id]["wall_time_s"]))
    log(f"experiment {experiment.name}: {len(experiment.cells)} cells, {len(done)} already done, "
        f"{len(todo)} to run ({jobs} job{'s' if jobs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''})")
    started = time.perf_counter()
    running: dict[str, tuple[subprocess.Popen, float, Cell]] = {}
    queue = list(todo)

    def progress_line(event: str) -> None:
        finished = len(done) + len(report.finished)
        left = len(queue) + len(running)
        eta = ""
        if durations and left:
            every = [d for values in durations.values() for d in values]
            fallback = sum(every) / len(every)

            def cost(cell: Cell) -> float:
                seen = durations.get(cell.dataset)
                return sum(seen) / len(seen) if seen else fallback

            remaining = sum(cost(c) for c in queue) + sum(
                max(0.0, cost(c) - (time.perf_counter() - t0)) for _, t0, c in running.values())
            eta = f", about {_format_duration(remaining / jobs)} left"
        log(f"[{finished}/{report.total} done{', ' + str(len(running)) + ' running' if running else ''}, "
            f"{_format_duration(time.perf_counter() - started)} elapsed{eta}] {event}")

    new_results = False
    stop = _StopFlag(running)
    previous = signal.signal(signal.SIGTERM, stop.set) if _main_thread() else None
    try:
        while (queue or running) and not stop.value:
            while queue and len(running) < jobs:
                cell = queue.pop(0)
                running[cell.id] = (_launch(experiment, cell, cells_dir, runs_dir, threads, device, tensorboard),
                                    time.perf_counter(), cell)
                progress_line(f"started {cell.id}")
            if new_results and on_progress:
                on_progress()  # after the free slots are refilled: the cores never wait for the report
            new_results = False
            time.sleep(POLL_S)
            for cell_id, (process, t0, cell) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[cell_id]
                elapsed = time.perf_counter() - t0
                if code == 0 and cell_file(cells_dir, cell_id).is_file():
                    report.finished.append(cell_id)
                    durations.setdefault(cell.dataset, []).append(elapsed)
                    progress_line(f"finished {cell_id} in {_format_duration(elapsed)}")
                    new_results = True
                elif code == EXIT_INTERRUPTED:
                    report.interrupted = True
                    progress_line(f"interrupted {cell_id}")
                elif code == DiskFullError.exit_code:
                    # Every other cell writes to the same disk: stop them all (each keeps its last
                    # checkpoint) rather than fail them one by one.
                    report.disk_full = cell_id
                    stop.value = True
                else:
                    report.failed.append(cell_id)
                    progress_line(f"FAILED {cell_id} (exit {code}); last lines of {runs_dir / (cell_id + '.log')}:\n"
                                  + _tail(runs_dir / f"{cell_id}.log"))
    except KeyboardInterrupt:
        stop.value = True
    except BaseException:
        stop.value = True  # e.g. a full disk while writing the results: never leave cells running unseen
        raise
    finally:
        if stop.value:
            report.interrupted = report.disk_full is None
            if running:
                log(f"stopping: {len(running)} running cell(s) finish their current step and keep their "
                    "last checkpoint; rerun the same command to resume")
            stop.stop_cells()
            for process, _, _ in running.values():
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    report.wall_s = time.perf_counter() - started
    return report


class _StopFlag:
    """Set by SIGTERM (or a full disk); stopping signals each running cell once, at once.

    The handler forwards SIGTERM to the cells itself rather than leaving it to the loop's next poll:
    a cell may reach its next check, or finish, in the half second the loop sleeps. Each cell is
    signalled at most once, because a second SIGTERM would interrupt the trainer while it finishes
    the run with its best checkpoint.
    """

    def __init__(self, running: dict) -> None:
        self.value = False
        self._running = running  # cell id -> (process, start time, cell), the loop's own table
        self._signalled: set[int] = set()

    def set(self, signum=None, frame=None) -> None:
        self.value = True
        if signum is not None:
            self.stop_cells()

    def stop_cells(self) -> None:
        for process, _, _ in list(self._running.values()):
            if process.pid not in self._signalled and process.poll() is None:
                self._signalled.add(process.pid)
                process.send_signal(signal.SIGTERM)  # the trainer stops cleanly on SIGTERM


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _launch(experiment: Experiment, cell: Cell, cells_dir: Path, runs_dir: Path, threads: int,
            device: str | None, tensorboard: Path | None) -> subprocess.Popen:
    job = {
        "experiment": experiment.name,
        "cell": cell.id,
        "options": cell.options,
        "axes": cell.axes,
        "config_key": cell.config_key,
        "run_dir": str((runs_dir / cell.id).resolve()),
        "cells_dir": str(cells_dir.resolve()),
        "threads": threads,
        "device": device,
        "tensorboard": str(tensorboard.resolve()) if tensorboard else None,
    }
    job_file = runs_dir / f"{cell.id}.job.json"
    files.write_text(job_file, json.dumps(job, indent=2))
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin beside other jobs
    source = str(Path(bamrec.__file__).resolve().parents[1])  # the bamrec being run, also in the child
    env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log_file = (runs_dir / f"{cell.id}.log").open("a", encoding="utf-8")
    try:
        return subprocess.Popen([sys.executable, "-m", "bamrec.experiments", str(job_file)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd(),
                                start_new_session=True)  # Ctrl-C reaches the runner, which stops the cells
    finally:
        log_file.close()


def _tail(file: Path, lines: int = 8) -> str:
    try:
        text = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text[-lines:])
