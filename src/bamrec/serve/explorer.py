"""The interest explorer, ``GET /`` of ``bamrec serve``: one page that shows what a user's interests are
made of.

The server renders the page's frame (the run, the query form, filled from ``/?user=ID`` or
``/?items=1,2,3``, and any error in that query) from ``templates/explorer.html``; ``static/explorer.js``
then asks ``POST /interests`` and ``POST /recommend`` and draws the history, the K interests (what each
draws on, its own top items), the merged recommendations and the balance between the interests. No
build step and nothing from another host: the page works offline, and its Content-Security-Policy
says so. The files are package data (pyproject.toml), so an installed wheel serves them.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from string import Template
from typing import Any, Mapping

from bamrec.errors import BamrecError
from bamrec.retrieval.service import Candidates, Query

PACKAGE = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE / "static"
TEMPLATE = PACKAGE / "templates" / "explorer.html"
DEFAULT_K = 20
# Everything the page loads comes from this server: no CDN, no inline script (data travel as attributes).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def split_items(text: str) -> list[str]:
    """Item ids typed or pasted as one string: separated by spaces, commas, semicolons or new lines."""
    return text.replace(",", " ").replace(";", " ").split()


def _flag(text: str) -> bool:
    return text.strip().lower() not in ("0", "false", "no", "off", "")


def _query(params: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """The form's values from the page's address and the query they ask for (None: no query yet).

    ``exclude_history`` is on unless the address says ``exclude_history=0``. The form sends a hidden 0
    and then, when the box is ticked, a 1: the last value is the one that counts (Starlette's
    ``get``)."""
    user, items = params.get("user", "").strip(), params.get("items", "").strip()
    by = "items" if params.get("by") == "items" or (items and not user and params.get("by") != "user") else "user"
    exclude = _flag(params.get("exclude_history", "1"))
    form = {"by": by, "user": user, "items": items, "k": params.get("k", str(DEFAULT_K)).strip(), "exclude": exclude}
    asked = user if by == "user" else items
    return form, (asked or None)


def _run_line(candidates: Candidates, info: Mapping[str, Any]) -> str:
    parts = [f"run {info['run']}" if info.get("run") else None, info.get("model"),
             f"K = {info['num_interests']} interests" if info.get("num_interests") else None,
             f"d = {info['dim']}" if info.get("dim") else None,
             f"{candidates.num_items:,} items",
             f"reads the last {candidates.seq_len} items",
             f"{info['retrieval']} retrieval" if info.get("retrieval") else None]
    return " · ".join(str(part) for part in parts if part)


def _user_help(candidates: Candidates) -> tuple[str, str]:
    """A placeholder user id and a line on the users, from the run's dataset where it has one."""
    try:
        dataset = candidates.dataset()
    except BamrecError as exc:
        return "", str(exc)
    if dataset.num_users == 0:
        return "", "the dataset has no users"
    first = dataset.user_ids[0].item()
    return str(first), f"{dataset.num_users:,} users, for example {first}"


def _check(candidates: Candidates, form: dict[str, Any]) -> str | None:
    """Why the query in the page's address cannot be answered (one line), or None when it can."""
    try:
        k = int(form["k"])
    except ValueError:
        return f"k must be an integer, got {form['k']!r}"
    try:
        candidates.check_k(k)
        if form["by"] == "user":
            candidates.histories([Query(user=form["user"], k=k)])
        else:
            candidates.histories([Query(items=split_items(form["items"]), k=k)])
    except BamrecError as exc:
        return " ".join(str(exc).split())
    return None


def render_page(candidates: Candidates, info: Mapping[str, Any], params: Mapping[str, str],
                lock: threading.Lock) -> str:
    """The explorer page for the address's query ``params`` (``user``, ``items``, ``k``, ``exclude_history``)."""
    form, asked = _query(params)
    with lock:  # the dataset is loaded on first use; requests must not load it twice at once
        placeholder, user_help = _user_help(candidates)
        error = _check(candidates, form) if asked else None
    checked, hidden = " checked", " hidden"
    values = {
        "title": "bamrec interest explorer" + (f": user {form['user']}" if asked and form["by"] == "user" else ""),
        "run_line": _run_line(candidates, info),
        "autorun": "1" if asked and error is None else "0",
        "num_interests": info.get("num_interests", ""),
        "by_user_checked": checked if form["by"] == "user" else "",
        "by_items_checked": checked if form["by"] == "items" else "",
        "user_hidden": hidden if form["by"] != "user" else "",
        "items_hidden": hidden if form["by"] != "items" else "",
        "user": form["user"], "user_placeholder": placeholder, "user_help": user_help,
        "items": form["items"], "seq_len": candidates.seq_len,
        "k": form["k"], "max_k": min(candidates.limits.max_k, candidates.num_items),
        "exclude_checked": checked if form["exclude"] else "",
        "error": error or "", "error_hidden": "" if error else hidden,
    }
    markup = {"by_user_checked", "by_items_checked", "user_hidden", "items_hidden", "exclude_checked", "error_hidden"}
    escaped = {name: value if name in markup else html.escape(str(value), quote=True) for name, value in values.items()}
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(escaped)
