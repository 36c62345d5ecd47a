"""What the predict loop draws: overlay images and videos in ``vis/``, heatmap overlays, the live
window (``--show``).

An image's overlay keeps the image's relative path; a video's or a stream's frames go into one
``.mp4`` (mp4v).  A live stream's overlay video is laid out on the stream's own clock at :data:`LIVE_OVERLAY_FPS`: a frame is repeated until
the next one's arrival time, so the video plays at the speed the scene happened, whatever frames were
dropped (a stream's announced rate is not used: OpenCV reports 25 for every MJPEG stream).  An overlay that cannot be written is reported once
per file; the poses are logged already.
"""
from __future__ import annotations

import math
import os
import sys

import cv2
import numpy as np

from frpose_cli.data.geometry import warp_matrix
from frpose_cli.errors import FrposeError
from frpose_cli.inference.draw import VideoOverlayWriter, draw_poses, heatmap_to_image, overlay_heatmap, write_image
from frpose_cli.inference.run_folder import safe_relative
from frpose_cli.inference.run_merge import Skipped

LIVE_OVERLAY_FPS = 25.0
MAX_REPEAT_SECONDS = 10.0   # a stream that stalled for minutes does not fill the video with one frame


def overlay_name(file_name: str, video: bool = False) -> str:
    """Where the overlay of ``file_name`` goes, relative to ``vis/``: never outside the run folder."""
    p = safe_relative(file_name)
    if video:
        return p.with_suffix(".mp4").as_posix()
    return p.as_posix() if p.suffix.lower() in (".jpg", ".jpeg", ".png") else p.as_posix() + ".jpg"


def display_available() -> str | None:
    """None when ``cv2.imshow`` can open a window here, else one line saying why not."""
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "NONE")
    if gui.upper() in ("", "NONE", "NO"):
        return ("this OpenCV has no GUI backend (e.g. opencv-python-headless), so it cannot show a window: "
                "install opencv-python instead, or drop --show")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display to show a window on (DISPLAY and WAYLAND_DISPLAY are unset, e.g. over SSH): drop --show"
    return None


class LiveWindow:
    """``--show``: each overlay in a window as it is made; ``q`` or Esc in it asks the run to stop."""
    TITLE = "frpose"

    def __init__(self):
        why = display_available()
        if why:
            raise FrposeError(f"--show: {why}")
        self.open = False

    def show(self, canvas_rgb: np.ndarray) -> bool:
        """Show a frame; False once the user asked to stop (q or Esc in the window).  A window closed with
        its close button is not read as a stop: GUI backends report it differently (ultralytics reads q alone)."""
        cv2.imshow(self.TITLE, cv2.cvtColor(canvas_rgb, cv2.COLOR_RGB2BGR))
        self.open = True
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), ord("Q"), 27)

    def close(self) -> None:
        if self.open:
            cv2.destroyWindow(self.TITLE)
            self.open = False


class Overlays:
    """The overlays of one predict process (``vis/``, ``heatmaps/``, the live window)."""

    def __init__(self, out_dir, spec, codec, kpt_thr: float, save_vis: bool, window: LiveWindow | None, summary):
        self.out_dir, self.spec, self.codec, self.kpt_thr = out_dir, spec, codec, kpt_thr
        self.save_vis, self.window, self.summary = save_vis, window, summary
        self.videos: dict[str, VideoOverlayWriter] = {}
        self.failed: set = set()
        self.stop_asked = False

    @property
    def drawing(self) -> bool:
        return self.save_vis or self.window is not None

    def draw(self, item, kpts, boxes, track_ids=None, log=None, shown=None) -> None:
        """Draw one image's or frame's poses into its overlay and the window; a failure to write
        is reported (once per file) through ``log``, the run's log.  ``shown()`` is called once the
        overlay is drawn and shown, before it is encoded into the overlay file (a live frame's latency)."""
        if not self.drawing:
            if shown is not None:
                shown()
            return
        canvas = draw_poses(item.image, kpts, self.spec, boxes, kpt_thr=self.kpt_thr, track_ids=track_ids)
        if self.window is not None and not self.window.show(canvas):
            self.stop_asked = True
        if shown is not None:
            shown()
        if not self.save_vis:
            return
        try:
            self._save(item, canvas)
        except (OSError, cv2.error) as e:   # the poses are logged already: only the overlay is lost
            self.failed_once(item, e, log)

    def _save(self, item, canvas) -> None:
        vis_dir = self.out_dir / "vis"
        if item.frame is None:
            write_image(vis_dir / overlay_name(item.file_name), canvas)
            return
        if item.file_name in self.failed:
            return
        video = self.videos.get(item.file_name)
        live = item.arrival is not None
        if video is None:
            fps = LIVE_OVERLAY_FPS if live else item.fps   # a stream's nominal rate is often wrong (MJPEG: always 25)
            video = self.videos[item.file_name] = VideoOverlayWriter(
                vis_dir / overlay_name(item.file_name, video=True), fps)
        repeats = 1
        if live and item.timestamp is not None:   # on the stream's clock: fill the frames dropped since the last
            due = math.floor(item.timestamp * video.fps) + 1 - video.frames
            repeats = int(min(max(1, due), MAX_REPEAT_SECONDS * video.fps))
        for _ in range(repeats):
            video.write(canvas)

    def heatmaps(self, item, heatmaps, centers, scales, log=None) -> None:
        """``--heatmaps``: the strongest heatmap of every person warped back onto the image."""
        hh, hw = heatmaps.shape[-2:]
        inv = [warp_matrix(c, s, 0, (hw, hh), inv=True, udp=self.codec.use_udp) for c, s in zip(centers, scales)]
        heat = heatmap_to_image(heatmaps, inv, item.image.shape[:2])
        name = overlay_name(item.file_name) if item.frame is None else \
            f"{safe_relative(item.file_name).with_suffix('').as_posix()}/{item.frame:06d}.jpg"
        try:
            write_image(self.out_dir / "heatmaps" / name, overlay_heatmap(item.image, stretch_heat(heat)))
        except (OSError, cv2.error) as e:
            self.failed_once(item, e, log)

    def failed_once(self, item, error, log) -> None:
        """Report an overlay that could not be written, once per file (a video's writer fails for every frame)."""
        if item.file_name in self.failed:
            return
        self.failed.add(item.file_name)
        reason = f"overlay not written ({error})"
        if log is not None:
            log.add({"o": [item.position, item.sub], "skipped": {"file_name": item.file_name, "reason": reason}})
        self.summary.skipped.append(Skipped(item.file_name, reason))

    def close(self) -> None:
        """Finish the overlay videos; one that cannot be finished is reported, the others and every
        prediction are kept (the run's results are merged after this)."""
        for name, video in self.videos.items():
            try:
                video.close()
            except (OSError, cv2.error) as e:
                if name not in self.failed:
                    self.failed.add(name)
                    self.summary.skipped.append(Skipped(name, f"overlay video not finished ({e})"))
        if self.window is not None:
            self.window.close()


def stretch_heat(heat: np.ndarray) -> np.ndarray:
    """Stretch to the full colour range so weak (e.g. untrained) heatmaps are still visible."""
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat
