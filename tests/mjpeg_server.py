"""A loopback MJPEG-over-HTTP server for tests of live sources (``frpose predict http://…``).

    from mjpeg_server import MjpegServer, numbered_frames

    with MjpegServer(numbered_frames(30), fps=15) as url:     # http://127.0.0.1:PORT/stream.mjpg
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        ...

Each connection gets ``multipart/x-mixed-replace; boundary=frame``: every part is one JPEG with
its ``Content-Type`` and ``Content-Length`` (what IP cameras and ``mjpg-streamer`` send, and what
FFmpeg's ``mpjpeg`` demuxer reads: checked by hand with OpenCV 5.1's bundled FFmpeg, libavformat
63).  The server binds 127.0.0.1 on a free port and runs in daemon threads; leaving the ``with``
block closes every connection and the listening socket.

Options:

* ``frames``: the pictures (H×W×3 uint8), encoded once as JPEG; ``rgb=True`` when they are RGB
  (otherwise BGR, OpenCV's order).  :func:`numbered_frames` makes frames whose order can be read
  back (a distinct flat colour each, see :func:`frame_number`).
* ``fps``: parts are paced on a fixed schedule from the connection's start (0: as fast as possible).
* ``loop``: serve the frames over and over (a camera that never ends); otherwise each connection
  gets the frames once and is closed (the stream *ends*).
* ``stall_after=k``: after k frames a connection stays open and silent until the server stops
  (a hung camera: the client's read blocks); every connection served does so.
* ``reconnect``: what a connection after the first gets: ``"serve"`` (the same stream again),
  ``"404"`` (an HTTP 404), or ``"refuse"`` (the listening socket is closed after the first
  connection, so a new one is refused by the kernel).
* ``hold``: a ``threading.Event``; after ``hold_after`` frames (3: what FFmpeg's open reads to probe)
  a connection waits until it is set, then goes on, its schedule starting again (a camera that starts
  streaming when its viewer is ready, so a test can count every frame).
* Counters: ``connections`` (accepted connections, any path), ``frames_sent`` (parts written, all
  connections together); ``url`` the stream's address (also what ``__enter__`` returns), ``port``.
  Without ``with``: ``server = MjpegServer(...).start()`` … ``server.stop()``.

:func:`numbered_frames` / :func:`frame_number` let a test check which frame it got, and in what order.
"""
from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np

BOUNDARY = "frame"


def numbered_frames(n: int, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """``n`` BGR frames of ``size`` (width, height), frame i a flat colour that
    :func:`frame_number` reads back after JPEG (channels 40 apart: far beyond JPEG's error)."""
    if n > 216:
        raise ValueError("numbered_frames: at most 216 distinct colours")
    w, h = size
    out = []
    for i in range(n):
        colour = (20 + 40 * (i % 6), 20 + 40 * (i // 6 % 6), 20 + 40 * (i // 36))
        out.append(np.full((h, w, 3), colour, np.uint8))
    return out


def frame_number(image: np.ndarray, rgb: bool = True) -> int:
    """Which :func:`numbered_frames` frame ``image`` is (its mean colour rounded to the palette)."""
    mean = image.reshape(-1, 3).mean(axis=0)
    b, g, r = (mean[::-1] if rgb else mean)
    digits = [int(round((c - 20) / 40)) for c in (b, g, r)]
    return digits[0] + 6 * digits[1] + 36 * digits[2]


class MjpegServer:
    def __init__(self, frames, fps: float = 25.0, *, loop: bool = False, stall_after: int | None = None,
                 reconnect: str = "serve", path: str = "/stream.mjpg", rgb: bool = False, quality: int = 95,
                 hold: threading.Event | None = None, hold_after: int = 3):
        if reconnect not in ("serve", "404", "refuse"):
            raise ValueError(f"reconnect must be 'serve', '404' or 'refuse' (got {reconnect!r})")
        self.parts = []
        for f in frames:
            img = cv2.cvtColor(f, cv2.COLOR_RGB2BGR) if rgb else f
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            self.parts.append(buf.tobytes())
        self.fps, self.loop, self.stall_after, self.reconnect = fps, loop, stall_after, reconnect
        self.hold, self.hold_after = hold, hold_after
        self.path = path
        self.connections = 0
        self.frames_sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._thread = threading.Thread(target=self._accept, daemon=True, name="mjpeg-accept")

    def __enter__(self) -> str:
        self.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "MjpegServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close_listener()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if self._thread.ident is not None:
            self._thread.join(timeout=2)

    def _close_listener(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass

    def _accept(self) -> None:
        self._listener.settimeout(0.05)   # lets stop() end the loop without a connection
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:      # listener closed
                return
            with self._lock:
                self.connections += 1
                first = self.connections == 1
                self._socks.append(conn)
            if first and self.reconnect == "refuse":
                self._close_listener()    # the next connect() gets ECONNREFUSED
            threading.Thread(target=self._serve, args=(conn, first), daemon=True, name="mjpeg-conn").start()

    def _serve(self, conn: socket.socket, first: bool) -> None:
        try:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1].decode("latin-1") if request.count(b" ") >= 2 else ""
            if path.split("?")[0] != self.path or (not first and self.reconnect == "404"):
                conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            conn.sendall(("HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\n"
                          f"Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\r\n").encode())
            start, sent = time.monotonic(), 0
            while not self._stop.is_set():
                if self.stall_after is not None and sent >= self.stall_after:
                    self._stop.wait()          # open and silent until the server stops
                    return
                if not self.loop and sent >= len(self.parts):
                    return
                if self.hold is not None and sent == self.hold_after and not self.hold.is_set():
                    while not (self.hold.wait(0.05) or self._stop.is_set()):
                        pass
                    start = time.monotonic() - sent / self.fps if self.fps > 0 else start
                if self.fps > 0:               # fixed schedule: no drift from send times
                    delay = start + sent / self.fps - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                data = self.parts[sent % len(self.parts)]
                conn.sendall(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
                             "\r\n\r\n".encode() + data + b"\r\n")
                sent += 1
                with self._lock:
                    self.frames_sent += 1
        except OSError:    # the client went away
            pass
        finally:
            with self._lock:
                if conn in self._socks:
                    self._socks.remove(conn)
            try:
                conn.close()
            except OSError:
                pass
