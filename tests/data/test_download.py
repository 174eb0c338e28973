"""Downloads against a real HTTP server on 127.0.0.1: full, resumed, restarted, corrupt, missing."""

from __future__ import annotations

import hashlib
import io
import socket
import zipfile
from pathlib import Path

import pytest

from bamrec.data import download, registry
from bamrec.data.prepare import prepare_dataset
from bamrec.errors import ConfigError, DataError

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


def _serve(server, name: str, data: bytes) -> str:
    path = server.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{server.url}/{name}"


def test_full_download_verified(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    dest = tmp_path / "cache" / "file.bin"
    result = download.download(url, dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("file.bin.part").exists()
    assert http_server.requests == [("/file.bin", None)]


def test_cached_file_is_not_downloaded_again(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    download.download(url, dest, progress=False)
    download.download(url, dest, progress=False)
    assert len(http_server.requests) == 1


def test_resume_after_truncated_part(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(PAYLOAD[:3000])
    download.download(url, dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.requests == [("/file.bin", "bytes=3000-")]


def test_server_ignoring_range_restarts_from_scratch(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    http_server.honour_range = False
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(PAYLOAD[:3000])
    download.download(url, dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_part_longer_than_file_starts_over(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(PAYLOAD + b"junk")  # server answers 416
    download.download(url, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.requests == [("/file.bin", f"bytes={len(PAYLOAD) + 4}-"), ("/file.bin", None)]


def test_dropped_connection_keeps_part_and_resumes(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    http_server.cut_after = 4000
    with pytest.raises(DataError, match=r"stopped after 4000 of 10240 bytes; run the same command again"):
        download.download(url, dest, progress=False)
    part = dest.with_name("file.bin.part")
    assert part.read_bytes() == PAYLOAD[:4000]
    assert not dest.exists()
    http_server.cut_after = None
    download.download(url, dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.requests[-1] == ("/file.bin", "bytes=4000-")


def test_checksum_mismatch_leaves_no_cache_entry(http_server, tmp_path):
    url = _serve(http_server, "file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match=r"checksum mismatch for .*file\.bin: expected MD5 0{32}"):
        download.download(url, dest, md5="0" * 32, progress=False)
    assert not dest.exists()
    assert not dest.with_name("file.bin.part").exists()


def test_404_is_a_clear_error(http_server, tmp_path):
    dest = tmp_path / "missing.zip"
    with pytest.raises(DataError, match=r"download of http://127\.0\.0\.1:\d+/missing\.zip failed: HTTP 404"):
        download.download(f"{http_server.url}/missing.zip", dest, progress=False)
    assert not dest.exists()
    assert not dest.with_name("missing.zip.part").exists()


def test_unreachable_host_is_a_clear_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match=r"cannot download .*; check the network, set BAMREC_MIRROR"):
        download.download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", progress=False, timeout=5)


@pytest.mark.parametrize(
    "text",
    ["c4d9eecfca2ab87c1945afe126590906  ml-1m.zip\n", "MD5 (ml-1m.zip) = C4D9EECFCA2AB87C1945AFE126590906\n",
     "c4d9eecfca2ab87c1945afe126590906"],
)
def test_fetch_md5_formats(http_server, text):
    url = _serve(http_server, "ml-1m.zip.md5", text.encode())
    assert download.fetch_md5(url) == "c4d9eecfca2ab87c1945afe126590906"


def test_fetch_md5_missing_is_none(http_server):
    assert download.fetch_md5(f"{http_server.url}/nothing.md5") is None


def test_resolve_url_mirror_precedence(monkeypatch):
    monkeypatch.delenv("BAMREC_MIRROR", raising=False)
    assert download.resolve_url("https://a.org/base/", "/x/y.zip") == "https://a.org/base/x/y.zip"
    monkeypatch.setenv("BAMREC_MIRROR", "http://env/")
    assert download.resolve_url("https://a.org/base", "x/y.zip") == "http://env/x/y.zip"
    assert download.resolve_url("https://a.org/base", "x/y.zip", "http://arg") == "http://arg/x/y.zip"


def test_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("BAMREC_HOME", str(tmp_path))
    assert download.cache_home() == tmp_path
    monkeypatch.delenv("BAMREC_HOME")
    assert download.cache_home() == Path.home() / ".cache" / "bamrec"


# --- registered datasets through the mirror -------------------------------------------------------


def _grouplens_zip(fixtures: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-1m/", "")
        zf.writestr("ml-1m/ratings.dat", (fixtures / "ratings.dat").read_bytes())
        zf.writestr("ml-1m/README", "tiny fixture")
    return buffer.getvalue()


def test_prepare_ml1m_downloads_verifies_and_caches(http_server, cache_home, fixtures, tmp_path):
    archive = _grouplens_zip(fixtures)
    _serve(http_server, "ml-1m.zip", archive)
    _serve(http_server, "ml-1m.zip.md5", f"MD5 (ml-1m.zip) = {hashlib.md5(archive).hexdigest()}\n".encode())
    notes: list[str] = []
    dataset = prepare_dataset("ml-1m", tmp_path / "out", mirror=http_server.url, progress=False, echo=notes.append)
    assert [dataset.sequence(u).tolist() for u in (1, 2, 3)] == [[2, 4, 1, 3], [4], [1, 2]]
    cached = cache_home / "downloads" / "ml-1m" / "ml-1m.zip"
    assert cached.read_bytes() == archive
    assert dataset.manifest["raw_file"] == {
        "name": "ml-1m.zip", "size": len(archive), "member": "ml-1m/ratings.dat",
        "sha256": hashlib.sha256(archive).hexdigest(),
    }
    assert [path for path, _ in http_server.requests] == ["/ml-1m.zip.md5", "/ml-1m.zip"]
    # Second time: from the cache, no request.
    prepare_dataset("ml-1m", tmp_path / "out2", mirror=http_server.url, progress=False)
    assert len(http_server.requests) == 2


def test_prepare_uses_mirror_from_environment(http_server, cache_home, fixtures, tmp_path, monkeypatch):
    archive = _grouplens_zip(fixtures)
    _serve(http_server, "ml-1m.zip", archive)
    _serve(http_server, "ml-1m.zip.md5", hashlib.md5(archive).hexdigest().encode())
    monkeypatch.setenv("BAMREC_MIRROR", http_server.url)
    dataset = prepare_dataset("ml-1m", tmp_path / "out", progress=False)
    assert dataset.num_interactions == 7


def test_prepare_with_corrupt_download_stores_nothing(http_server, cache_home, fixtures, tmp_path):
    archive = _grouplens_zip(fixtures)
    _serve(http_server, "ml-1m.zip", archive)
    _serve(http_server, "ml-1m.zip.md5", ("f" * 32).encode())
    with pytest.raises(DataError, match="checksum mismatch"):
        prepare_dataset("ml-1m", tmp_path / "out", mirror=http_server.url, progress=False)
    folder = cache_home / "downloads" / "ml-1m"
    assert list(folder.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_prepare_without_publisher_checksum_warns(http_server, cache_home, fixtures, tmp_path):
    _serve(http_server, "ml-1m.zip", _grouplens_zip(fixtures))
    notes: list[str] = []
    prepare_dataset("ml-1m", tmp_path / "out", mirror=http_server.url, progress=False, echo=notes.append)
    assert any(n.startswith("no checksum at ") and "not verified" in n for n in notes)


def test_prepare_amazon2023_category_from_mirror(http_server, cache_home, fixtures, tmp_path):
    import gzip

    remote = "benchmark/5core/rating_only/Video_Games.csv.gz"
    _serve(http_server, remote, gzip.compress((fixtures / "Video_Games.csv").read_bytes()))
    dataset = prepare_dataset("amazon2023", tmp_path / "out", category="Video_Games", mirror=http_server.url,
                              progress=False)
    assert [dataset.sequence(u).tolist() for u in (1, 2, 3)] == [[2, 4, 1, 3], [4], [1, 2]]
    assert dataset.user_ids.tolist() == ["U1", "U2", "U3"]
    assert (cache_home / "downloads" / "amazon2023" / remote).is_file()
    assert dataset.manifest["rules"]["category"] == "Video_Games"


def test_amazon2023_unknown_category_on_server_is_404(http_server, cache_home, tmp_path):
    with pytest.raises(DataError, match="HTTP 404.*check the dataset name and category"):
        prepare_dataset("amazon2023", tmp_path / "out", category="Books", mirror=http_server.url, progress=False)
    with pytest.raises(ConfigError, match="unknown amazon2023 category 'video_games'"):
        prepare_dataset("amazon2023", tmp_path / "out", category="video_games", mirror=http_server.url)


def test_raw_file_for_jsonl_variant_points_at_review_dump(http_server, cache_home, fixtures):
    import gzip

    remote = "raw/review_categories/Books.jsonl.gz"
    _serve(http_server, remote, gzip.compress((fixtures / "reviews.jsonl").read_bytes()))
    raw, layout = registry.raw_file("amazon2023", category="Books", fmt="jsonl", mirror=http_server.url,
                                    progress=False)
    assert layout.fmt == "jsonl" and raw.path == cache_home / "downloads" / "amazon2023" / remote
    assert http_server.requests == [(f"/{remote}", None)]
