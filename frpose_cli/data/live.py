"""Live sources for `frpose predict`: webcams (``0``, ``webcam:1``) and network streams (``rtsp://``,
``http://…/video.mjpg``, HLS ``.m3u8``, ``udp://``, ``srt://``…), read with low latency.

One policy for every live source (:class:`LiveCapture`; defaults in brackets):

* **Newest frame wins.**  From :meth:`~LiveCapture.open` on, a daemon reader thread reads the
  source continuously and keeps only the newest frame in a one-frame slot; once the consumer has
  started (the first :meth:`~LiveCapture.frames` step), a frame replaced before the consumer took it
  is *dropped* (counted; a gap in ``index``).  So latency is one frame plus the consumer's own work
  whatever its speed, and memory is bounded (never a queue): a source read only as fast as a slow
  consumer fills OpenCV's, FFmpeg's and the kernel's buffers and falls ever further behind.  What
  arrives between the open and the first frame taken (a model loading, the networks' first call)
  is the *pre-roll*: read and let go, neither counted nor numbered, so the first frame taken is
  frame 0, the newest one, and not a burst of stale ones (FFmpeg's open alone reads 3 MJPEG frames).  HLS hands over whole segments at
  once (checked: a segment's 20 frames within 1 ms, then nothing for 2 s), so HLS frames are
  released at the nominal rate (``CAP_PROP_FPS``, right for HLS) and wait :data:`HLS_STALL_SECONDS`.
* **Arrival time is the clock**: ``timestamp`` is seconds since the first frame by
  ``time.monotonic()`` at arrival, not the container's clock, which OpenCV 5.1's FFmpeg stamps
  40 ms apart for MJPEG over HTTP (a nominal 25 fps, also its ``CAP_PROP_FPS``) whatever the real
  rate, which restarts on a reconnect, and which webcams fill with driver times or 0.  ``arrival``
  is the raw monotonic time (for latency); :attr:`LiveCapture.measured_fps` the real rate.
* **Stalls and failures reconnect.**  A failed read (the stream ended, the camera went away) or no
  new frame for ``stall_seconds`` [5 s: seconds of frames even from slow IP cameras, short for a
  person watching] releases the capture, waits ``retry_wait`` [1 s: a restarting camera is back
  within seconds, a dead one is not hammered] and reopens, up to ``retries`` times in a row [3; a
  good frame resets the count]; then :meth:`~LiveCapture.frames` ends, ``end_reason`` saying why.
  ``cap.read()`` can block inside FFmpeg, so the consumer keeps its own deadline: a stuck reader is
  abandoned (a daemon thread never keeps the process alive; it releases its capture if its read
  returns), and FFmpeg's read timeout, 1 s past ``stall_seconds``, frees it.  FFmpeg's open timeout
  is ``open_timeout`` [10 s: an RTSP handshake on a slow link takes seconds; OpenCV's default: 30].
* **Recorded files over http(s)** (a path ending ``.mp4``, ``.avi``, …) are not live: no thread,
  every frame in order, nothing dropped, timestamps from ``CAP_PROP_POS_MSEC`` (else index / fps);
  the end of the file or a read failure ends them, without reconnecting (a download would restart;
  ``end_reason`` only if fewer frames came than the container announces).

Credentials never reach a message: names shown are :attr:`LiveSpec.display_name` (``user:pw@``
becomes ``***@``, secret-looking query values ``***``); :func:`stream_file_name` drops both.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import cv2
import numpy as np

from frpose_cli.data.images import to_rgb8
from frpose_cli.errors import FrposeError

# FFmpeg's own messages ("Stream ends prematurely", "Connection refused") would come beside frpose's one line
# about the same event; a user who wants them sets OPENCV_FFMPEG_LOGLEVEL (read by OpenCV's FFmpeg backend
# when it first starts, so here, before any capture)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "http", "https")
RECORDED_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
RETRIES, STALL_SECONDS, RETRY_WAIT, OPEN_TIMEOUT = 3, 5.0, 1.0, 10.0
HLS_STALL_SECONDS = 15.0    # a live playlist adds a segment every target duration (≤ 10 s by Apple's advice)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# userinfo: everything up to the last '@' before the query (a password may hold '@' or '/')
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^?#]*@)")
_SECRET_KEY = re.compile(r"token|key|pass|pwd|secret|auth|sig|session|credential", re.I)


@dataclass(frozen=True)
class LiveSpec:
    """A live ``SOURCE``: ``kind`` "webcam" or "stream", ``target`` what cv2.VideoCapture opens (a
    camera index or the URL, credentials included: never print it), ``live`` False for a recorded
    file read over http(s), ``display_name`` the redacted name for messages and records."""
    kind: str
    target: int | str = field(repr=False)
    live: bool
    display_name: str


def redact(url: str) -> str:
    """``url`` with its ``user:password@`` as ``***@`` and secret-looking query values as ``***``."""
    url = _USERINFO.sub(lambda m: m.group(1) + ("***@" if m.group(2) != "@" else "@"), url)
    url = url.split("#", 1)[0]   # a fragment is never sent to the server: nothing to show
    if "?" in url:
        head, _, query = url.partition("?")
        query = "&".join(re.sub(r"=.*", "=***", kv, flags=re.S) if _SECRET_KEY.search(kv.split("=")[0]) else kv
                         for kv in query.split("&"))
        url = f"{head}?{query}"
    return url


def live_spec(spec: str) -> LiveSpec | None:
    """What ``spec`` names if it is a live source; None for a path.  FrposeError for an unsupported
    ``scheme://`` or a malformed ``webcam:N``."""
    spec = str(spec).strip()
    if spec.isdigit() and spec.isascii() and not Path(spec).exists():   # a file named "0" is a file
        return LiveSpec("webcam", int(spec), True, f"webcam{int(spec)}")
    if spec.lower().startswith("webcam:"):
        n = spec[7:]
        if not (n.isdigit() and n.isascii()):
            raise FrposeError(f"webcam source must be webcam:N with N a camera number such as 0 (got {spec!r})")
        return LiveSpec("webcam", int(n), True, f"webcam{int(n)}")
    m = _SCHEME.match(spec)
    if m is None:
        return None
    scheme = m.group(1).lower()
    shown = redact(spec)
    if scheme not in SCHEMES:
        raise FrposeError(f"unsupported source scheme {scheme}:// in {shown} (live sources: "
                          + ", ".join(s + "://" for s in SCHEMES) + "; or a webcam number such as 0)")
    target = scheme + spec[len(scheme):]
    recorded = scheme in ("http", "https") and _path_suffix(spec) in RECORDED_EXTS
    return LiveSpec("stream", target, not recorded, shown)


def _path_suffix(url: str) -> str:
    try:
        return Path(urlsplit(url).path).suffix.lower()
    except ValueError:   # e.g. an unbalanced '[' in the host
        return ""


def stream_file_name(spec: str | LiveSpec) -> str:
    """A safe relative file name for a live source (``webcam0``, ``stream-127.0.0.1-8080-video.mjpg``):
    host, port and path only (no credentials, no query), one component, never ``..``."""
    s = spec if isinstance(spec, LiveSpec) else live_spec(spec)
    if s is None:
        raise ValueError(f"stream_file_name: {spec!r} is not a live source")
    if s.kind == "webcam":
        return s.display_name
    rest = _USERINFO.sub(r"\1", str(s.target)).split("://", 1)[1]   # credentials go first
    words = re.split(r"[/:@\\\[\]]+", re.split(r"[?#]", rest, maxsplit=1)[0])
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(["stream", *(w for w in words if w.strip("."))]))
    return re.sub(r"\.{2,}", ".", name)[:120].rstrip(".-")


@dataclass(eq=False)
class LiveFrame:
    index: int              # frames read from the source before this one (dropped ones included)
    image_rgb: np.ndarray   # H×W×3 uint8 RGB
    timestamp: float        # seconds since the first frame (arrival clock; recorded: the file's clock)
    arrival: float          # time.monotonic() when it arrived
    dropped_before: int     # frames dropped since the previous frame given out


class LiveCapture:
    """Opens and reads one live source by the module's policy; see :meth:`frames`."""

    def __init__(self, spec: LiveSpec, *, retries: int = RETRIES, stall_seconds: float = STALL_SECONDS,
                 retry_wait: float = RETRY_WAIT, open_timeout: float = OPEN_TIMEOUT,
                 capture_factory=cv2.VideoCapture):
        if not isinstance(spec, LiveSpec):
            raise TypeError(f"spec must be a LiveSpec (from live_spec), got {type(spec).__name__}")
        for name, value, ok, need in (("retries", retries, type(retries) is int and retries >= 0, "an integer >= 0"),
                                      ("stall_seconds", stall_seconds, stall_seconds > 0, "> 0"),
                                      ("open_timeout", open_timeout, open_timeout > 0, "> 0"),
                                      ("retry_wait", retry_wait, retry_wait >= 0, ">= 0")):
            if not ok:
                raise ValueError(f"{name} must be {need} (got {value!r})")
        self._hls = spec.kind == "stream" and _path_suffix(str(spec.target)) == ".m3u8"
        stall_seconds = max(stall_seconds, HLS_STALL_SECONDS) if self._hls else stall_seconds
        self.spec, self.retries, self.stall_seconds = spec, retries, float(stall_seconds)
        self._name = f"webcam {spec.target}" if spec.kind == "webcam" else f"stream {spec.display_name}"
        self.retry_wait, self.open_timeout, self._factory = float(retry_wait), float(open_timeout), capture_factory
        self._cond = threading.Condition()   # guards everything the reader thread touches
        self._cap = self._reader = None      # the capture while no reader owns it; the current reader
        self._gen = 0                        # the current reader's number: a reader with an older one quits
        self._slot = self._failed = None     # (index, BGR frame, arrival) not taken yet; why the reader stopped
        self._last_event = 0.0               # monotonic time of the last frame or (re)connection
        self._first_arrival, self._arrivals = None, deque(maxlen=32)
        self._taken, self._row, self._closed = -1, 0, False   # last index given out; reconnects in a row
        self._base = None   # frames_read when the consumer took its first frame: the pre-roll before it
        self.fps: float | None = None
        self.frames_read = self.dropped = self.reconnects = 0
        self.end_reason: str | None = None

    def _open_capture(self):
        """A new opened capture; FrposeError if it does not open (``_open_why`` the reason alone).  OpenCV's
        warnings while it tries its backends (camera probing, "can't be used to capture by name") are
        silenced: the failure is said in frpose's one line."""
        logging = cv2.utils.logging
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            return self._open_capture_quietly()
        finally:
            logging.setLogLevel(level)

    def _open_capture_quietly(self):
        target = self.spec.target
        if self.spec.kind == "webcam":
            cap = self._factory(target)
            self._open_why = (f"OpenCV cannot open camera {target}: not connected, used by another program, "
                              "or not permitted")
            failed = f"no webcam {target} ({self._open_why})"
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(min(self.open_timeout * 1000, 2e9)),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(min((self.stall_seconds + 1) * 1000, 2e9))]
            started = time.monotonic()
            try:
                cap = self._factory(target, cv2.CAP_FFMPEG, params)
            except (TypeError, cv2.error):   # an OpenCV without open parameters
                cap = self._factory(target, cv2.CAP_FFMPEG)
            timed_out = time.monotonic() - started >= 0.9 * self.open_timeout
            self._open_why = (f"no answer within {self.open_timeout:g} s" if timed_out
                              else "connection failed, or not a video stream OpenCV's FFmpeg can read")
            failed = f"cannot open stream {self.spec.display_name}: {self._open_why}"
        if not cap.isOpened():
            cap.release()
            raise FrposeError(failed)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = self.fps or (fps if 1 <= fps <= 240 else None)
        return cap

    def open(self) -> "LiveCapture":
        """Open the source now (idempotent), so a wrong address fails in one line before any model
        work; FrposeError "cannot open stream …" / "no webcam N (…)" if it does not open."""
        if self._closed:
            raise ValueError("LiveCapture.open: the capture is closed")
        if self._cap is None and self._gen == 0:   # not opened, and no reader took it over
            self._cap = self._open_capture()
            self._start_reading()   # the pre-roll: frames keep flowing while the consumer gets ready
        return self

    __enter__ = open

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader and release the capture (idempotent).  A reader stuck in FFmpeg is not
        waited for past a second: it releases its capture when its read returns."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._gen += 1
            self.dropped += self._slot is not None   # read, never given out
            (reader, cap), self._reader, self._cap, self._slot = (self._reader, self._cap), None, None, None
            self._cond.notify_all()
        if cap is not None:
            cap.release()
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=1.0)

    @property
    def measured_fps(self) -> float | None:
        """Frames per second over the last 32 arrivals (None before two frames)."""
        with self._cond:
            a = list(self._arrivals)
        return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 and a[-1] > a[0] else None

    def _start_reader(self, cap) -> None:
        with self._cond:
            if self._closed:   # closed while it was (re)opening
                cap.release()
                return
            self._gen += 1
            self._failed, self._last_event = None, time.monotonic()
            self._reader = reader = threading.Thread(target=self._read_loop, args=(cap, self._gen), daemon=True,
                                                     name=f"frpose-live-{self.spec.display_name}")
        reader.start()

    def _read_loop(self, cap, gen: int) -> None:
        why, due, pace = "the stream ended or a read failed", 0.0, 1 / self.fps if self._hls and self.fps else 0
        try:
            while True:
                ok, frame = cap.read()
                now = time.monotonic()
                with self._cond:
                    if pace and ok:   # HLS: a segment's frames at the stream's rate, not all at once
                        due = max(due + pace, now)
                        self._cond.wait_for(lambda: gen != self._gen, due - now)
                        now = time.monotonic()
                    if gen != self._gen:
                        return
                    if not ok or frame is None:
                        break
                    self.dropped += self._slot is not None and self._base is not None   # not the pre-roll
                    self._slot, self._last_event = (self.frames_read, frame, now), now
                    self.frames_read += 1
                    self._arrivals.append(now)
                    self._cond.notify_all()
        except Exception as e:   # a backend error is a failed read, not a crash of the thread
            text = str(e).replace(str(self.spec.target), self.spec.display_name)
            why = "read failed (" + " ".join(text.split()) + ")"   # OpenCV's errors span lines
        finally:
            cap.release()
        with self._cond:
            if gen == self._gen:
                self._failed = why
                self._cond.notify_all()

    def frames(self, stop: threading.Event | None = None) -> Iterator[LiveFrame]:
        """Frames until ``stop`` is set, :meth:`close` is called, or the source ends: then
        ``end_reason`` says why in one line (None when stopped, or a recorded file's complete end).
        Opens the source if needed.  One consumer at a time."""
        if self._closed:
            return
        self.open()
        if not self.spec.live:
            yield from self._recorded(stop)
            return
        self._start_reading()
        while not self._closed and self.end_reason is None:
            with self._cond:
                if not self._wait(lambda: self._slot is not None or self._failed is not None,
                                  self._last_event + self.stall_seconds, stop):
                    return
                item, self._slot = self._slot, None
                if item is None:   # a stuck reader quits (and releases) when its read returns
                    trouble, self._failed = self._failed or f"no frame for {self.stall_seconds:g} s", None
                    self._gen += 1
            if item is None:
                self._reconnect(trouble, stop)
                continue
            self._row, (index, frame, arrival) = 0, item
            if self._base is None:   # the first frame taken: everything before it was the pre-roll
                with self._cond:   # and the stall clock starts now, not at a pre-roll frame's arrival
                    self._base, self._first_arrival, self._taken = index, arrival, index - 1
                    self._last_event = max(self._last_event, time.monotonic())
            dropped_before, self._taken = index - self._taken - 1, index
            yield LiveFrame(index - self._base, to_rgb8(frame), arrival - self._first_arrival, arrival, dropped_before)

    @property
    def preroll(self) -> int:
        """Frames read before the consumer took its first one (let go, not counted as dropped)."""
        return self._base if self._base is not None else self.frames_read

    @property
    def frames_since_start(self) -> int:
        """Frames read since the consumer took its first one (the pre-roll left out)."""
        return self.frames_read - (self._base or 0) if self._base is not None else 0

    def _start_reading(self) -> None:
        """A live source's reader takes the opened capture over (from :meth:`open` on)."""
        if self.spec.live and self._cap is not None:
            cap, self._cap = self._cap, None
            self._start_reader(cap)

    def _reconnect(self, trouble: str, stop: threading.Event | None) -> None:
        """Reopen after ``trouble``, up to ``retries`` times in a row; else set ``end_reason``."""
        last = trouble
        while self._row < self.retries:
            self._row += 1
            self.reconnects += 1
            with self._cond:
                if not self._wait(lambda: False, time.monotonic() + self.retry_wait, stop):
                    return
            try:
                cap = self._open_capture()
            except FrposeError:
                last = f"reopening failed ({self._open_why})"
                continue
            self._start_reader(cap)
            return
        self.end_reason = (f"{self._name}: {trouble}" + (f", then {last}" if last != trouble else "")
                           + f" after {_n(self._row, 'reconnect')}; ended after {_n(self.frames_since_start, 'frame')}")

    def _wait(self, ready, deadline: float, stop: threading.Event | None) -> bool:
        """Wait, holding the lock, until ``ready()`` or ``deadline`` (monotonic); False when closed
        or stopped.  A caller's Event cannot wake a Condition, so it is looked at every 0.1 s."""
        while not (self._closed or (stop is not None and stop.is_set())):
            left = deadline - time.monotonic()
            if ready() or left <= 0:
                return True
            self._cond.wait(min(left, 0.1) if stop is not None else left)
        return False

    def _recorded(self, stop: threading.Event | None) -> Iterator[LiveFrame]:
        """A recorded file over http(s): in order, on demand, its own clock, nothing dropped."""
        cap, last_ts = self._cap, -1.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        while not self._closed and self.end_reason is None and not (stop is not None and stop.is_set()):
            ok, frame = cap.read()
            if not ok or frame is None:   # the end; a line only when it came early
                if not self._closed and (self.frames_read == 0 or self.frames_read < count - 1):   # ±1
                    self.end_reason = (f"{self._name}: ended after {self.frames_read} of the {count} frames its "
                                       "container announces (cut off, or the connection broke)" if count else
                                       f"{self._name}: no frame could be read")
                return
            arrival = time.monotonic()
            ts = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
            if not ts > last_ts:   # no usable container clock: the nominal rate
                ts = self.frames_read / (self.fps or 25.0)
            last_ts, index = ts, self.frames_read
            self.frames_read += 1
            self._arrivals.append(arrival)
            yield LiveFrame(index, to_rgb8(frame), ts, arrival, 0)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"
