"""Downloads of named weights, against a loopback HTTP server started by the test (never the internet):
progress into the cache with the hash checked, mismatches and broken transfers leave nothing, a closed
port is the one-line offline message with exit 2, the mirror variable redirects the zoo, --offline makes
no connection, and `frpose predict photo.jpg` works with no flags from zoo weights.  Then issue #19:
two processes download a file once, a killed download's temp file is cleaned up, redirects (308 too)
are followed, an HTML page is refused, and the hash rules (name claims, --strict-hash, zoo digests)."""
import hashlib
import http.server
import io
import json
import os
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from frpose_cli.inference.detector_choice import default_detector
from frpose_cli.fileio import atomic_open
from frpose_cli.weights import download, zoo
from frpose_cli.weights.download import _is_temp_of, fetch, hash_prefix_in_name, set_strict_hash
from frpose_cli.errors import FrposeError
from helpers import run_cli
from test_weights import mmpose_checkpoint, reference_sbn

IMAGE = Path(__file__).parent / "data" / "coco" / "val2017" / "000000000785.jpg"
REPO = Path(__file__).resolve().parent.parent


class Server:
    """Serves ``files`` (URL path → bytes) on 127.0.0.1; ``truncate`` paths send half and hang up;
    ``slow`` paths take that many seconds, in ten pieces; a ``stall`` path sends half, sets ``stalled``
    and waits for ``resume`` (once; later requests get the whole file); ``redirects`` answer
    (code, location); ``types`` set the Content-Type."""

    def __init__(self):
        self.files, self.truncate, self.requests = {}, set(), []
        self.slow, self.stall, self.redirects, self.types = {}, set(), {}, {}
        self.stalled, self.resume = threading.Event(), threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path in server.redirects:
                    code, location = server.redirects[self.path]
                    self.send_response(code)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", server.types.get(self.path, "application/octet-stream"))
                self.end_headers()
                if self.path in server.stall:
                    server.stall.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.stalled.set()
                    server.resume.wait(60)   # the client is killed meanwhile: the rest never goes
                elif self.path in server.slow:
                    for i in range(10):
                        self.wfile.write(body[i * len(body) // 10: (i + 1) * len(body) // 10])
                        self.wfile.flush()
                        time.sleep(server.slow[self.path] / 10)
                else:
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
    s.resume.set()
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed (conftest turns them off), into a fresh cache."""
    monkeypatch.delenv("FRPOSE_OFFLINE", raising=False)
    monkeypatch.setenv("FRPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FRPOSE_STRICT_HASH", raising=False)
    monkeypatch.setattr("frpose_cli.weights.download._offline_flag", False)
    monkeypatch.setattr("frpose_cli.weights.download._strict_hash_flag", False)
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
        fetch(server.add(bad_name, body), strict=True)
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
    assert f"/{default_detector('cpu')[0].file_name}" in server.requests   # the detector was tried there too (404)...
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


def python(code: str, *args, **kw) -> subprocess.Popen:
    """``python -c code args`` with this environment (the online fixture's cache) and this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO, text=True, **kw)


# Imports first, then waits for "go": both processes then ask for the file at the same moment.
AT_ONCE = """import sys
from frpose_cli.weights.download import fetch
print("ready", flush=True)
sys.stdin.readline()
print(fetch(sys.argv[1], progress=False))
"""


def test_two_processes_at_once_download_the_file_once(server, online):
    body = os.urandom(300_000)
    name = named_with_hash("shared", body)
    url = server.add(name, body)
    server.slow["/" + name] = 1.5   # the second process asks while the first downloads
    procs = [python(AT_ONCE, url, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        assert p.stdout.readline() == "ready\n", p.communicate()[1]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert [out.strip() for out, _ in results] == [str(online / name)] * 2
    assert server.requests.count("/" + name) == 1
    waited = [err for _, err in results if f"frpose: waiting for another process downloading {name}" in err]
    assert len(waited) == 1 and waited[0].count("\n") == 1, results
    assert (online / name).read_bytes() == body
    assert sorted(p.name for p in online.iterdir()) == [name], "no lock or temp file left"


def test_a_killed_download_leaves_a_temp_file_that_the_next_one_removes(server, online):
    body = os.urandom(300_000)
    name = named_with_hash("killed", body)
    url = server.add(name, body)
    server.stall.add("/" + name)
    proc = python("import sys; from frpose_cli.weights.download import fetch; fetch(sys.argv[1], progress=False)",
                  url)
    try:
        assert server.stalled.wait(60), "the download never started"
        time.sleep(0.3)   # let the first half reach the temp file
    finally:
        proc.kill()
        proc.wait(30)
    server.resume.set()
    left = sorted(p.name for p in online.iterdir())
    assert name not in left and any(_is_temp_of(name, n) for n in left), left
    assert set(left) <= {f".{name}.lock", *filter(lambda n: _is_temp_of(name, n), left)}
    other = online / f".{name}.v2.pth.abcd1234.tmp"   # another name's temp: not this download's to remove
    other.write_bytes(b"")
    path = fetch(url, progress=False)
    assert path.read_bytes() == body
    assert sorted(p.name for p in online.iterdir()) == sorted([name, other.name])


def test_the_stale_temp_pattern_is_the_one_fileio_writes(tmp_path):
    name = "w-0123abcd.pth"
    with atomic_open(tmp_path / name, "wb"):
        temps = [p.name for p in tmp_path.iterdir()]
    assert len(temps) == 1 and _is_temp_of(name, temps[0]), temps
    assert not _is_temp_of(name, f".{name}.lock") and not _is_temp_of(name, f".{name}.v2.pth.abcd1234.tmp")
    assert not _is_temp_of("w.pth", f".{name}.abcd1234.tmp")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_followed(server, online, code):
    body = b"moved" * 100
    name = named_with_hash("moved", body)
    server.add(f"new/{name}", body)
    server.redirects[f"/old/{name}"] = (code, f"/new/{name}")
    path = fetch(f"{server.url}/old/{name}", progress=False)
    assert path == online / name and path.read_bytes() == body
    assert server.requests == [f"/old/{name}", f"/new/{name}"]


def test_a_redirect_loop_is_one_line(server, online):
    server.redirects["/loop.pth"] = (308, "/loop.pth")
    with pytest.raises(FrposeError, match=r"HTTP 308 more than 10 redirects or a redirect loop") as e:
        fetch(f"{server.url}/loop.pth", progress=False)
    assert "\n" not in str(e.value)
    assert list(online.iterdir()) == []


@pytest.mark.parametrize("body, content_type", [(b"\n  <!DOCTYPE html><html><body>Sign in</body></html>", "text/html"),
                                                (b"\xef\xbb\xbf<HTML><body>404</body></HTML>", "application/octet-stream"),
                                                (b"<head><title>Error</title></head>", "text/html; charset=utf-8")])
def test_an_html_page_is_refused_not_cached(server, online, body, content_type):
    url = server.add("weights-0123abcd.pth", body)
    server.types["/weights-0123abcd.pth"] = content_type
    with pytest.raises(FrposeError, match=r"served an HTML page, not a weights file \(a login or error page\? "
                                          r"check the URL\)$"):
        fetch(url, progress=False)
    assert list(online.iterdir()) == []


def test_a_date_in_a_name_claims_no_hash(server, online, capsys):
    set_strict_hash(True)   # even strict: there is no claim to fail
    path = fetch(server.add("best-20240501.pth", b"any content at all"), progress=False)
    assert path.read_bytes() == b"any content at all" and "warning" not in capsys.readouterr().err


def test_a_user_urls_hash_mismatch_warns_and_keeps_unless_strict(server, online, capsys, monkeypatch):
    url = server.add("model-0123abcd.pth", b"not what the name claims")
    path = fetch(url, progress=False)
    err = capsys.readouterr().err
    assert path.read_bytes() == b"not what the name claims"
    assert err.startswith("frpose: warning: ") and err.count("\n") == 1 and "expected 0123abcd…" in err
    assert "kept" in err and "--strict-hash" in err
    path.unlink()
    for strict in (lambda: set_strict_hash(True), lambda: monkeypatch.setenv("FRPOSE_STRICT_HASH", "1")):
        monkeypatch.setattr(download, "_strict_hash_flag", False)
        monkeypatch.delenv("FRPOSE_STRICT_HASH", raising=False)
        strict()
        with pytest.raises(FrposeError, match="expected 0123abcd… .*; not kept"):
            fetch(url, progress=False)
        assert list(online.iterdir()) == []
    monkeypatch.delenv("FRPOSE_STRICT_HASH")
    with pytest.raises(FrposeError, match="expected 0{64}; not kept"):   # an explicit digest: always strict
        fetch(server.add("plain.pth", b"x"), sha256="0" * 64, progress=False)
    code, _, err = run_cli(["predict", IMAGE, "--weights", url, "--strict-hash", "--detector", "whole-image",
                            "--no-progress", "--out", online.parent / "run"], capsys)
    assert code == 2 and "not kept" in err and err.strip().count("\n") == 0, err
    assert list(online.iterdir()) == []


@pytest.mark.parametrize("verb", ["predict", "eval", "export", "train", "bench", "models"])
def test_every_verb_with_offline_has_strict_hash(verb, capsys):
    code, out, _ = run_cli([verb, "--help"], capsys)
    assert code == 0 and "--offline" in out and "--strict-hash" in out


def test_zoo_entries_refuse_any_mismatch(server, online, monkeypatch):
    body = b"the zoo's file"
    digest = hashlib.sha256(body).hexdigest()
    monkeypatch.setenv("FRPOSE_MIRROR", server.url)
    claims_other = named_with_hash("zoo", b"another file")   # the name's claim is wrong: refused, not warned
    server.add(claims_other, body)
    with pytest.raises(FrposeError, match="expected .*the hash in its name.*; not kept"):
        zoo.ZooEntry("t", "pose", f"https://download.invalid/{claims_other}").fetch(progress=False)
    # the name's prefix matches, the full digest does not: refused
    name = named_with_hash("zoo", body)
    server.add(name, body)
    forged = digest[:8] + ("0" if digest[8] != "0" else "1") + digest[9:]
    with pytest.raises(FrposeError, match=f"SHA-256 is {digest}, expected {forged}; not kept"):
        zoo.ZooEntry("t", "pose", f"https://download.invalid/{name}", sha256=forged).fetch(progress=False)
    assert list(online.iterdir()) == []
    path = zoo.ZooEntry("t", "pose", f"https://download.invalid/{name}", sha256=digest).fetch(progress=False)
    assert path.read_bytes() == body
    with pytest.raises(ValueError, match="sha256 must be the file's full lowercase digest"):
        zoo.ZooEntry("t", "pose", f"https://download.invalid/{claims_other}", sha256=digest)


STEMS = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=30)
EXTS = st.sampled_from([".pth", ".pt", ".pth.tar", ".ckpt", ".onnx", ".bin"])
HEX = "0123456789abcdef"


@given(STEMS, st.text(string.digits, min_size=1, max_size=80), EXTS)
def test_names_ending_in_digits_claim_no_hash(stem, digits, ext):
    assert hash_prefix_in_name(f"{stem}-{digits}{ext}") is None


@given(STEMS, st.text(HEX, min_size=8, max_size=64).filter(lambda h: not h.isdigit()), EXTS)
def test_torchvision_names_claim_their_hash(stem, hex_digits, ext):
    assert hash_prefix_in_name(f"{stem}-{hex_digits}{ext}") == hex_digits


@given(STEMS, st.text(HEX, min_size=8, max_size=8), st.text(string.digits, min_size=8, max_size=8), EXTS)
def test_openmmlab_names_claim_their_hash_even_all_digits(stem, hex_digits, date, ext):
    assert hash_prefix_in_name(f"{stem}-{hex_digits}_{date}{ext}") == hex_digits


@pytest.mark.parametrize("given, expected", [
    ("best.pt", "best.pt is weights, not a model card name: pass it as --weights best.pt"),
    ("https://host/x.pth", "pass it as --weights https://host/x.pth"),
    ("sbn-r50-384x288", "sbn-r50-384x288 is weights, not a model card name"),
    ("nope", "unknown model 'nope'; known models: "),
    ("sbn-r18", "no published weights for sbn-r18 (the zoo has none for this card)"),
])
def test_a_model_argument_that_is_not_a_card_says_what_it_is(given, expected, capsys, tmp_path):
    """`frpose export best.pt` (ultralytics' habit) names the option that takes the file, before any work."""
    for verb in (["export", given, "--out", str(tmp_path / "m.onnx")], ["eval", given, "--data", str(tmp_path)]):
        code, _, err = run_cli(verb, capsys)
        assert code == 2 and expected in err and "Traceback" not in err, (verb, err)
    assert not any(tmp_path.iterdir())


def test_bench_and_train_say_which_option_takes_a_weights_file(capsys, tmp_path):
    code, _, err = run_cli(["bench", "best.pt", "--json", str(tmp_path / "b.json")], capsys)
    assert code == 2 and "best.pt is weights, not a model card name: pass it as --weights best.pt" in err, err
    code, _, err = run_cli(["train", "runs/train/x/last.pt", "--data", str(tmp_path), "--out", str(tmp_path / "run")],
                           capsys)
    assert code == 2 and "--init runs/train/x/last.pt" in err and "--resume runs/train/x/last.pt" in err, err
    assert not any(tmp_path.iterdir())
