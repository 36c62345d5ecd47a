"""Downloads of named weights, against a loopback HTTP server started by the test (never the internet):
progress into the cache with the hash checked, mismatches and broken transfers leave nothing, a closed
port is the one-line offline message with exit 2, the mirror variable redirects the zoo, --offline makes
no connection, and `frpose predict photo.jpg` works with no flags from zoo weights."""
import hashlib
import http.server
import io
import json
import socket
import threading
from pathlib import Path

import pytest
import torch

from frpose_cli.weights import zoo
from frpose_cli.weights.download import fetch
from frpose_cli.errors import FrposeError
from helpers import run_cli
from test_weights import mmpose_checkpoint, reference_sbn

IMAGE = Path(__file__).parent / "data" / "coco" / "val2017" / "000000000785.jpg"


class Server:
    """Serves ``files`` (URL path → bytes) on 127.0.0.1; ``truncate`` paths send half and hang up."""

    def __init__(self):
        self.files, self.truncate, self.requests = {}, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.truncate else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, name: str, body: bytes) -> str:
        self.files["/" + name] = body
        return f"{self.url}/{name}"


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed (conftest turns them off), into a fresh cache."""
    monkeypatch.delenv("FRPOSE_OFFLINE", raising=False)
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("frpose_cli.weights.download._offline_flag", False)
    return tmp_path / "home" / "weights"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens once the socket is closed


def named_with_hash(stem: str, body: bytes, suffix=".pth") -> str:
    return f"{stem}-{hashlib.sha256(body).hexdigest()[:8]}{suffix}"


@pytest.fixture(scope="module")
def tiny_pose_file():
    buf = io.BytesIO()
    torch.save(mmpose_checkpoint(reference_sbn()), buf)
    return buf.getvalue()


def test_download_goes_to_the_cache_hash_checked_with_progress(server, online, capsys):
    body = b"weights" * 1000
    name = named_with_hash("tiny", body)
    path = fetch(server.add(name, body))
    assert path == online / name and path.read_bytes() == body
    err = capsys.readouterr().err
    assert f"download {name}" in err and "100%" in err and f"→ {path}" in err
    assert fetch(f"{server.url}/{name}") == path and len(server.requests) == 1, "a cached file is not fetched again"
    assert sorted(p.name for p in online.iterdir()) == [name], "no temp file left"


def test_a_mismatching_or_broken_download_leaves_nothing(server, online):
    body = b"tampered" * 100
    bad_name = named_with_hash("tiny", b"the original")
    with pytest.raises(FrposeError, match="SHA-256 is .*expected .*not kept"):
        fetch(server.add(bad_name, body))
    name = named_with_hash("half", body)
    url = server.add(name, body)
    server.truncate.add("/" + name)
    with pytest.raises(FrposeError, match=f"stopped at {len(body) // 2} of {len(body)} bytes"):
        fetch(url)
    with pytest.raises(FrposeError, match="HTTP 404"):
        fetch(f"{server.url}/missing-0123abcd.pth")
    assert not online.exists() or list(online.iterdir()) == []


def test_a_closed_port_gives_the_offline_message_and_exit_2(online, capsys, monkeypatch):
    monkeypatch.setenv("FRPOSE_MIRROR", f"http://127.0.0.1:{closed_port()}/mirror")
    code, out, err = run_cli(["predict", IMAGE, "--weights", "sbn-r101", "--out", online.parent / "run"], capsys)
    entry = zoo.get("sbn-r101")
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot download http://127.0.0.1:" in err and f"/mirror/{entry.file_name}" in err
    assert "offline?" in err and str(online / entry.file_name) in err
    assert not (online.parent / "run").exists()


def test_offline_makes_no_connection(server, online, capsys, monkeypatch):
    body = b"x" * 100
    url = server.add(named_with_hash("tiny", body), body)
    code, _, err = run_cli(["predict", IMAGE, "--weights", url, "--offline"], capsys)
    assert code == 2 and "downloads are off (--offline / FRPOSE_OFFLINE)" in err and "copy it there from" in err
    monkeypatch.setattr("frpose_cli.weights.download._offline_flag", False)
    monkeypatch.setenv("FRPOSE_OFFLINE", "1")
    code, _, err = run_cli(["eval", "--weights", url, "--data", IMAGE.parent.parent, "--gt-boxes"], capsys)
    assert code == 2 and "downloads are off" in err
    assert server.requests == []


@pytest.fixture
def tiny_zoo(monkeypatch, server, tiny_pose_file):
    """A zoo entry for a small sbn-r18 mmpose file, served by the loopback server through FRPOSE_MIRROR."""
    name = named_with_hash("td-hm_res18_coco-64x64", tiny_pose_file)
    entry = zoo.ZooEntry("sbn-r18-test", "pose", f"https://download.invalid/mmpose/{name}", "sbn-r18", (64, 64),
                         "mmpose", "rgb", 50.0, "test")
    server.add(name, tiny_pose_file)
    monkeypatch.setitem(zoo.ENTRIES, entry.name, entry)
    monkeypatch.setattr(zoo, "POSE", (*zoo.POSE, entry))
    monkeypatch.setattr(zoo, "DEFAULT_POSE", entry.name)
    monkeypatch.setenv("FRPOSE_MIRROR", server.url)
    return entry


def test_mirror_redirects_the_zoo_and_predict_needs_no_flags(tiny_zoo, server, online, capsys, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["predict", IMAGE, "--no-progress"], capsys)
    assert code == 0, err
    assert f"/{tiny_zoo.file_name}" in server.requests   # fetched from the mirror, not download.invalid
    assert f"/{zoo.DETECTOR.file_name}" in server.requests   # the detector was tried there too (404)...
    assert "using the whole image" in err and "HTTP 404" in err   # ...and auto fell back, saying why
    assert "pose model: sbn-r18-test, published Simple Baselines weights" in err and "not the paper's network" in err
    records = json.loads((tmp_path / "runs" / "predict" / "run1" / "predictions.json").read_text())
    assert len(records) == 1 and len(records[0]["keypoints"]) == 51
    assert (online / tiny_zoo.file_name).is_file()
    server.requests.clear()   # a second run uses the cache only
    code, _, err = run_cli(["predict", IMAGE, "--no-progress", "--detector", "whole-image", "--offline"], capsys)
    assert code == 0 and server.requests == [], err


def test_eval_and_export_take_zoo_names_and_urls(tiny_zoo, server, online, capsys, tmp_path):
    code, out, err = run_cli(["eval", "sbn-r18", "--input-size", "64x64", "--data", Path(__file__).parent / "data" / "coco",
                              "--gt-boxes", "--no-progress", "--out", tmp_path / "r.json", "--workers", "0"], capsys)
    assert code == 0, err
    assert f"weights sbn-r18-test ({online / tiny_zoo.file_name})" in err and "RGB input" in err
    code, out, err = run_cli(["export", "--weights", f"{server.url}/{tiny_zoo.file_name}", "--out",
                              tmp_path / "m.onnx"], capsys)
    assert code == 0 and "PASS" in out, err
    code, _, err = run_cli(["eval", "frpose-r34", "--data", tmp_path], capsys)
    assert code == 2 and "no published weights for frpose-r34 (the paper published none)" in err
