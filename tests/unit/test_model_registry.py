"""Models by name: fetched from a real HTTP server on loopback, hash-checked, cached atomically;
the cache never holds a bad or partial file; offline, one clear line says where to put the file."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from gpu_ops import model_registry
from gpu_ops.model_registry import KNOWN_MODELS, ModelRelease, ModelUnavailable, cached_problem, ensure_release, resolve_model

BODY = b"checkpoint bytes " * 4096


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.truncate:
            self.wfile.write(body[: len(body) // 3])  # then the connection closes mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.files, _Handler.truncate, _Handler.hits = {}, set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _release(base: str, path: str = "/md.pt", **changes) -> ModelRelease:
    fields = dict(name="test-detector", url=base + path, filename="md.pt", format="yolov5", input_size=1280,
                  classes=("animal", "person", "vehicle"))
    return ModelRelease(**{**fields, **changes})


def _cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock")


def test_right_hash_is_fetched_once_and_cached(server, tmp_path):
    base, handler = server
    handler.files["/md.pt"] = BODY
    release = _release(base, sha256=hashlib.sha256(BODY).hexdigest())
    path = ensure_release(release, model_dir=tmp_path)
    assert path == tmp_path / "test-detector" / "md.pt" and path.read_bytes() == BODY
    assert ensure_release(release, model_dir=tmp_path) == path
    assert handler.hits == ["/md.pt"]  # the second call used the cache
    assert _cache_files(tmp_path) == ["test-detector/md.pt"]


def test_wrong_hash_leaves_nothing_in_the_cache(server, tmp_path):
    base, handler = server
    handler.files["/md.pt"] = BODY
    release = _release(base, sha256="0" * 64)
    with pytest.raises(ModelUnavailable, match=r"test-detector: the file from .* has sha256 .*expected 000000000000\.\.\.: not cached"):
        ensure_release(release, model_dir=tmp_path)
    assert _cache_files(tmp_path) == []


def test_interrupted_download_leaves_nothing_in_the_cache(server, tmp_path):
    base, handler = server
    handler.files["/md.pt"] = BODY
    handler.truncate.add("/md.pt")
    for release in (_release(base, sha256=hashlib.sha256(BODY).hexdigest()), _release(base)):  # published digest, and TOFU
        with pytest.raises(ModelUnavailable) as raised:
            ensure_release(release, model_dir=tmp_path)
        assert "\n" not in str(raised.value) and "test-detector" in str(raised.value)
        assert _cache_files(tmp_path) == []


def test_trust_on_first_use_pins_the_first_complete_download(server, tmp_path):
    base, handler = server
    handler.files["/md.pt"] = BODY
    release = _release(base)
    path = ensure_release(release, model_dir=tmp_path)
    pin = path.with_name("md.pt.sha256")
    assert pin.read_text().strip() == hashlib.sha256(BODY).hexdigest()
    assert model_registry.pinned_digest(release, tmp_path) == hashlib.sha256(BODY).hexdigest()
    path.write_bytes(b"tampered")  # a later change to the file is caught against the pin ...
    assert "expected" in cached_problem(release, tmp_path)
    handler.files["/md.pt"] = BODY
    assert ensure_release(release, model_dir=tmp_path).read_bytes() == BODY  # ... and fetched again


def test_corrupt_cached_file_is_replaced(server, tmp_path):
    base, handler = server
    handler.files["/md.pt"] = BODY
    release = _release(base, sha256=hashlib.sha256(BODY).hexdigest())
    target = release.target(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a file")
    assert ensure_release(release, model_dir=tmp_path).read_bytes() == BODY


def test_offline_is_one_line_saying_where_to_put_the_file(tmp_path):
    release = _release("http://127.0.0.1:9", sha256="a" * 64)  # port 9: nothing listens
    with pytest.raises(ModelUnavailable) as raised:
        ensure_release(release, model_dir=tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("test-detector is not cached and could not be fetched")
    assert f"fetch http://127.0.0.1:9/md.pt elsewhere and put it at {tmp_path / 'test-detector' / 'md.pt'}" in message
    with pytest.raises(ModelUnavailable, match="not cached; fetch .* elsewhere and put it at"):
        ensure_release(release, fetch=False, model_dir=tmp_path)
    assert _cache_files(tmp_path) == []


def test_archive_release_extracts_into_a_folder(server, tmp_path):
    base, handler = server
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("speciesnet/info.json", b"{}"), ("speciesnet/labels.txt", b"a\nb\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    handler.files["/model.tar.gz"] = buffer.getvalue()
    release = _release(base, "/model.tar.gz", name="test-classifier", filename="model.tar.gz", format="speciesnet",
                       archive=True, sha256=hashlib.sha256(buffer.getvalue()).hexdigest())
    folder = ensure_release(release, model_dir=tmp_path)
    assert folder.is_dir() and (folder / "labels.txt").read_bytes() == b"a\nb\n" and (folder / "info.json").is_file()
    assert ensure_release(release, model_dir=tmp_path) == folder and handler.hits == ["/model.tar.gz"]


def test_resolve_model_by_name_and_by_path(server, tmp_path, monkeypatch):
    base, handler = server
    handler.files["/md_v5a.0.0.pt"] = BODY
    monkeypatch.setenv("ODINS_RAVNE_MODEL_DIR", str(tmp_path / "cache"))
    real = KNOWN_MODELS["megadetector-v5a"]
    monkeypatch.setitem(KNOWN_MODELS, "megadetector-v5a", dataclasses.replace(real, url=base + "/md_v5a.0.0.pt"))
    path = resolve_model("megadetector-v5a")
    assert path == tmp_path / "cache" / "megadetector-v5a" / "md_v5a.0.0.pt" and path.read_bytes() == BODY
    assert resolve_model(str(path)) == path
    with pytest.raises(ModelUnavailable, match="neither a file or folder nor a known release"):
        resolve_model(str(tmp_path / "nope.pt"))


def test_known_releases_are_well_formed():
    for name, release in KNOWN_MODELS.items():
        assert release.name == name and release.url.startswith("https://")
        assert release.format in ("yolov5", "ultralytics", "speciesnet")
        assert release.sha256 is None or len(release.sha256) == 64
    assert KNOWN_MODELS["megadetector-v5a"].input_size == 1280 and KNOWN_MODELS["megadetector-v1000-redwood"].format == "yolov5"


def test_models_list_shows_known_and_cached(tmp_path, monkeypatch, capsys):
    from odins_ravne_assets.cli import main

    monkeypatch.setenv("ODINS_RAVNE_MODEL_DIR", str(tmp_path))
    release = KNOWN_MODELS["megadetector-v5a"]
    release.target(tmp_path).parent.mkdir(parents=True)
    release.target(tmp_path).write_bytes(BODY)
    resolve_model("megadetector-v5a", fetch=False)  # first use pins it
    assert main(["models", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("megadetector-")}
    assert set(lines) >= {"megadetector-v5a", "megadetector-v5b", "megadetector-v1000-redwood", "megadetector-v6-yolov9-c"}
    assert " yes " in lines["megadetector-v5a"] and hashlib.sha256(BODY).hexdigest()[:12] in lines["megadetector-v5a"]
    assert " no " in lines["megadetector-v5b"] and "pinned on first verified fetch" in lines["megadetector-v5b"]
