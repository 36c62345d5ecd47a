"""`frpose predict` on live sources end to end: an MJPEG stream served from a loopback HTTP server inside
the test (tests/mjpeg_server.py), a webcam through a mocked capture; Ctrl-C and SIGTERM end a stream
cleanly, a stall ends it with one line, --show without a display and unknown schemes are one line."""
import json
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from frpose_cli.data import live
from frpose_cli.inference import predict as predict_core, stream
from helpers import run_cli
from mjpeg_server import MjpegServer, frame_number, numbered_frames
from test_live import FakeCapture, factory



@pytest.fixture(scope="module")
def ckpt(frpose_r18_checkpoint):
    return frpose_r18_checkpoint


@pytest.fixture
def quick_policy(monkeypatch):
    """Stalls and reconnects in fractions of a second (the documented policy is 5 s, 1 s, 3 times)."""
    monkeypatch.setattr(live, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(live, "RETRY_WAIT", 0.05)
    monkeypatch.setattr(live, "RETRIES", 1)


def args(ckpt, source, out, *extra):
    return ["predict", source, "-w", ckpt, "--out", out, "--no-progress", "--no-flip", "--detector", "whole-image",
            "--backend", "torch", *extra]


def frames_of(out: Path) -> list:
    return [r["frame"] for r in json.loads((out / "predictions.json").read_text())]


def overlay_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_a_stream_of_n_frames_gives_its_frames_of_records_and_a_playable_overlay(ckpt, tmp_path, monkeypatch,
                                                                                  capsys):
    """The camera holds its frames after FFmpeg's probe until the run is ready (its networks warmed up): every
    frame after the newest probe frame is then in predictions.json, none dropped at 4 frames/s."""
    n, ready = 10, __import__("threading").Event()
    monkeypatch.setattr(live, "RETRY_WAIT", 0.05)   # the stream's end: one quick reconnect, refused (404)
    monkeypatch.setattr(live, "RETRIES", 1)
    warm_up = predict_core.warm_up
    monkeypatch.setattr(predict_core, "warm_up", lambda *a: (warm_up(*a), ready.set()))
    with MjpegServer(numbered_frames(n, (96, 72)), fps=4, reconnect="404", hold=ready) as url:
        source = url.replace("http://", "http://viewer:secret@")
        out = tmp_path / "run"
        code, stdout, err = run_cli(args(ckpt, source, out), capsys)
    assert code == 1, stdout + err     # the stream ended: reconnecting failed, said in one line (a warning)
    frames = frames_of(out)
    assert frames == list(range(n - 2)), stdout   # the probe's first two frames: before the run was ready
    assert ", 0 dropped while the network was busy, 2 frames before the networks were ready" in stdout
    assert "the stream ended or a read failed" in stdout and f"ended after {n - 2} frames" in stdout
    videos = list((out / "vis").glob("*.mp4"))
    # laid out on the stream's clock at 25 frames/s: a frame shows until the next one's arrival time
    last = max(r["timestamp"] for r in json.loads((out / "predictions.json").read_text()))
    assert len(videos) == 1 and abs(overlay_frames(videos[0]) - (int(last * 25) + 1)) <= 1 and last > 1.5
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".mp4")
    assert b"secret" not in written and b"viewer" not in written and "secret" not in stdout + err


@pytest.mark.parametrize("sig, said", [(signal.SIGINT, "Ctrl-C (SIGINT)"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_ends_a_stream_cleanly_keeping_every_processed_frame(ckpt, tmp_path, monkeypatch, capsys, sig, said):
    write, written = stream.PredictLoop._write, []

    def write_then_signal(loop, item, *a):
        write(loop, item, *a)
        written.append((item.frame, frame_number(item.image)))
        if len(written) == 6:
            signal.raise_signal(sig)   # halfway: the loop finishes this frame, then ends
    monkeypatch.setattr(stream.PredictLoop, "_write", write_then_signal)
    with MjpegServer(numbered_frames(40, (96, 72)), fps=20, loop=True) as url:
        out = tmp_path / "run"
        code, stdout, err = run_cli(args(ckpt, url, out), capsys)
    assert code == 0, stdout + err
    assert f"ended by {said}" in stdout and "predict: 6 images" in stdout
    assert frames_of(out) == [f for f, _ in written] and len(written) == 6
    # each record is the frame it says (frame 0 is the first frame taken, whichever the camera numbers it)
    assert len({(number - f) % 40 for f, number in written}) == 1
    assert overlay_frames(next((out / "vis").glob("*.mp4"))) >= 6
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handlers restored


def test_a_stalled_stream_ends_the_run_with_one_line(ckpt, tmp_path, quick_policy, capsys):
    with MjpegServer(numbered_frames(20, (96, 72)), fps=10, stall_after=4, reconnect="refuse") as url:
        out = tmp_path / "run"
        code, stdout, err = run_cli(args(ckpt, url, out, "--no-vis"), capsys)
    assert code == 1, stdout + err
    # the camera hangs: our stall clock, or FFmpeg's read timeout a second after it, ends the stream
    lines = [line for line in stdout.splitlines() if "no frame for 1 s" in line or "a read failed" in line]
    assert len(lines) == 1 and lines[0].startswith("warning stream-127.0.0.1") and "ended after" in lines[0], stdout
    assert 1 <= len(frames_of(out)) <= 4 and "Traceback" not in err


def test_a_webcam_through_a_mocked_capture(ckpt, tmp_path, quick_policy, monkeypatch, capsys):
    """A camera that gives its next frame when the run has written the last one: every frame is run, in order."""
    import threading
    monkeypatch.chdir(tmp_path)   # no file named "0" here: "0" is webcam 0
    bgr = [cv2.resize(f, (96, 72)) for f in numbered_frames(8)]
    gate = threading.Semaphore(0)
    monkeypatch.setattr(cv2, "VideoCapture", factory(dict(frames=bgr, period=0.001, gate=gate), dict(opened=False)))
    write = stream.PredictLoop._write
    monkeypatch.setattr(stream.PredictLoop, "_write", lambda loop, *a: (write(loop, *a), gate.release()))
    code, stdout, err = run_cli(args(ckpt, "0", tmp_path / "run", "--no-vis"), capsys)
    assert code == 1 and "webcam 0: the stream ended" in stdout, stdout + err
    assert [c.args for c in FakeCapture.made] == [(0,), (0,)]
    records = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert [r["frame"] for r in records] == list(range(8)) and {r["file_name"] for r in records} == {"webcam0"}
    assert all("track_id" in r and "timestamp" in r for r in records)


def test_no_display_unknown_scheme_and_resume_of_a_stream_are_one_line(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    cases = [([image, "--show"], "--show: "),
             (["foo://camera/1"], "foo://"),
             (["rtsp://user:pw@10.0.0.1/s", "--resume"], "is a live source"),
             (["rtsp://user:pw@10.0.0.1/s", "--smooth-offline"], "waits for later frames")]
    for extra, message in cases:
        code, _, err = run_cli(args(ckpt, *extra[:1], tmp_path / "never", *extra[1:]), capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("frpose: error:") and message in last and "Traceback" not in err, err
        assert "pw" not in err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("source_kind", ["stream", "video"])
def test_show_draws_each_frame_and_q_stops(ckpt, tmp_path, monkeypatch, capsys, source_kind):
    """--show with a (mocked) display: every overlay is shown; q on the 4th ends a stream cleanly (exit 0) and
    stops a video run as Ctrl-C does (exit 130, what was done is saved)."""
    from frpose_cli.inference import overlays
    monkeypatch.setattr(overlays, "display_available", lambda: None)
    shown, keys = [], iter([-1, -1, -1, ord("q")] + [-1] * 100)
    monkeypatch.setattr(overlays.cv2, "imshow", lambda title, image: shown.append(image.shape))
    monkeypatch.setattr(overlays.cv2, "waitKey", lambda ms: next(keys))
    monkeypatch.setattr(overlays.cv2, "destroyWindow", lambda title: shown.append("closed"))
    frames = numbered_frames(30, (96, 72))
    if source_kind == "video":
        source = tmp_path / "clip.avi"
        writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 72))
        for f in frames:
            writer.write(f)
        writer.release()
        code, stdout, err = run_cli(args(ckpt, source, tmp_path / "run", "--show", "--workers", "0"), capsys)
    else:
        with MjpegServer(frames, fps=20, loop=True) as url:
            code, stdout, err = run_cli(args(ckpt, url, tmp_path / "run", "--show"), capsys)
    assert shown[:4] == [(72, 96, 3)] * 4 and shown[-1] == "closed", shown
    assert (code, "ended by q in the --show window" in stdout) == ((0, True) if source_kind == "stream" else (130, False))
    assert len(frames_of(tmp_path / "run")) == 4
