"""The interest explorer page (GET /) without a browser: its landmarks and form, the address's query
(/?user=ID) filled in or refused in one line, its script and style served, nothing from another host,
and its files in the wheel. tests/serve/test_explorer_browser.py drives it in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from bamrec.api import load_run  # noqa: E402
from bamrec.serve import explorer  # noqa: E402
from bamrec.serve.app import create_app  # noqa: E402
from live_server import live_server  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text inside each element id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str | None) -> list[dict[str, str | None]]:
        """The attributes of each ``tag`` with ``attrs`` (``for_``: ``for``); a bare attribute's value is None."""
        return [a for t, a in self.tags if t == tag and all(a.get(k.rstrip("_"), "") == v for k, v in attrs.items())]


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


@pytest.fixture(scope="module")
def client(titled_run):
    run = load_run(titled_run)
    info = {"run": titled_run.name, "model": "comirec-sa", "retrieval": "exact", "num_interests": 3, "dim": 8}
    with live_server(create_app(run.candidates(max_k=25), info)) as address:
        with httpx.Client(base_url=address, timeout=10) as client:
            yield client


def test_page_has_landmarks_headings_labels_and_live_regions(client):
    answer = client.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    tags = parse(page)
    for landmark in ("header", "main", "footer"):
        assert len(tags.find(landmark)) == 1, landmark
    assert tags.find("html", lang="en") and tags.find("h1") and tags.find("h2", id="results-heading")
    # Every field has a label that names it; the choice of query is a fieldset with a legend.
    for field in ("user", "items", "k"):
        assert tags.find("label", for_=field), field
        assert tags.find("input", id=field) or tags.find("textarea", id=field)
    assert tags.find("fieldset") and "<legend>" in page
    assert tags.find("p", id="status", role="status", **{"aria-live": "polite"})
    assert tags.find("p", id="error", role="alert")
    assert tags.find("section", id="results", **{"aria-labelledby": "results-heading"})
    assert tags.find("a", href="#results-heading")  # skip link for keyboard users
    assert tags.find("button", type="submit")
    # The run is described, and nothing is asked for yet.
    assert "run run" in page and "K = 3 interests" in page and "30 items" in page
    assert tags.find("form", id="query")[0]["data-autorun"] == "0"
    assert "41 users, for example 1" in page


def test_page_loads_nothing_from_another_host(client):
    answer = client.get("/")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src" not in policy  # scripts: this server only
    tags = parse(answer.text)
    links = [a.get("src") or a.get("href") for t, a in tags.tags if a.get("src") or a.get("href")]
    assert "static/explorer.js" in links and "static/explorer.css" in links
    assert not [link for link in links if re.match(r"^(https?:)?//", link)], links
    assert all(a.get("src") for t, a in tags.tags if t == "script")  # no inline script: the policy refuses it


def test_static_script_and_style_are_served(client):
    script = client.get("/static/explorer.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    # It asks the JSON endpoints the page documents and puts the answers in as text, not markup.
    assert 'post("interests", query)' in script.text and 'post("recommend", query)' in script.text
    assert "innerHTML" not in script.text
    style = client.get("/static/explorer.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    missing = client.get("/static/nothing.js")
    assert (missing.status_code, missing.json()) == (404, {"error": "no endpoint /static/nothing.js; see /docs"})


def test_user_in_the_address_opens_that_user(client):
    tags = parse(client.get("/?user=5").text)
    assert tags.find("input", id="user")[0]["value"] == "5"
    assert tags.find("form", id="query")[0]["data-autorun"] == "1"
    assert "checked" in tags.find("input", value="user")[0]
    assert "checked" in tags.find("input", id="exclude")[0]  # on by default for a bare /?user=
    assert "hidden" in tags.find("p", id="error")[0]
    # A submitted form sends a hidden 0 and, when the box is ticked, a 1 after it: the last one counts.
    tags = parse(client.get("/?by=user&user=5&k=7&exclude_history=0").text)
    assert tags.find("input", id="k")[0]["value"] == "7" and "checked" not in tags.find("input", id="exclude")[0]
    tags = parse(client.get("/?by=user&user=5&k=7&exclude_history=0&exclude_history=1").text)
    assert "checked" in tags.find("input", id="exclude")[0]
    tags = parse(client.get("/?items=3,4%2027").text)
    assert "checked" in tags.find("input", value="items")[0]
    assert tags.find("form", id="query")[0]["data-autorun"] == "1"
    assert "hidden" not in tags.find("p", id="items-field")[0] and "hidden" in tags.find("p", id="user-field")[0]


@pytest.mark.parametrize("address, message", [
    ("/?user=999", "unknown user 999: not in the run&#x27;s dataset (41 users)"),
    ("/?items=3,77", "unknown item id(s) [&#x27;77&#x27;]: not in the run&#x27;s item map (30 items)"),
    ("/?user=5&k=0", "k must be an integer in [1, 25], got 0"),
    ("/?user=5&k=many", "k must be an integer, got &#x27;many&#x27;"),
])
def test_a_query_that_cannot_be_answered_is_one_clear_line_on_the_page(client, address, message):
    page = client.get(address)
    assert page.status_code == 200
    tags = parse(page.text)
    assert "hidden" not in tags.find("p", id="error")[0]
    assert message in re.search(r'<p id="error" role="alert" class="error">(.*?)</p>', page.text).group(1)
    assert tags.find("form", id="query")[0]["data-autorun"] == "0"


def test_the_address_is_escaped(client):
    page = client.get("/", params={"user": '"><script>alert(1)</script>'}).text
    assert "<script>alert" not in page and "&quot;&gt;&lt;script&gt;" in page


def test_explorer_files_are_package_data_of_the_wheel(tmp_path):
    """An installed wheel serves the page: its template, script and style are in the wheel."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel, = (tmp_path / "dist").glob("bamrec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"bamrec/serve/{path.relative_to(explorer.PACKAGE).as_posix()}"
               for folder in (explorer.STATIC_DIR, explorer.TEMPLATE.parent) for path in folder.iterdir()}
    assert {"bamrec/serve/static/explorer.js", "bamrec/serve/static/explorer.css",
            "bamrec/serve/templates/explorer.html"} <= shipped
    assert shipped <= names, shipped - names
