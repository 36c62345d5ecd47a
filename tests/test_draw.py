"""Overlays are looked at: a known pose is rendered and its pixels checked."""
import cv2
import numpy as np

from frpose_cli.inference.draw import (CENTER_COLOR, LEFT_COLOR, RIGHT_COLOR, VideoOverlayWriter, draw_poses,
                                       heatmap_to_image, limb_color, overlay_heatmap, write_image)
from frpose_cli.data.geometry import warp_matrix
from frpose_cli.data.keypoints import COCO17

# A standing person in a 200×300 image (x, y), COCO-17 order.
POSE = np.array([
    [100, 40], [92, 34], [108, 34], [84, 40], [116, 40],          # nose, eyes, ears
    [70, 80], [130, 80], [55, 130], [145, 130], [50, 175], [150, 175],  # shoulders, elbows, wrists
    [82, 170], [118, 170], [78, 225], [122, 225], [75, 280], [125, 280]], np.float32)  # hips, knees, ankles


def _render(scores, **kw):
    kpts = np.concatenate([POSE, scores[:, None]], 1)[None]
    return draw_poses(np.zeros((300, 200, 3), np.uint8), kpts, COCO17, thickness=3, radius=4, **kw)


def test_skeleton_pixels_land_on_the_keypoints():
    canvas = _render(np.ones(17, np.float32), draw_boxes=False)
    name = {n: i for i, n in enumerate(COCO17.names)}
    # Every keypoint centre is painted in its side's colour.
    for k, (x, y) in enumerate(POSE):
        expected = {"left": LEFT_COLOR, "right": RIGHT_COLOR}.get(COCO17.names[k].split("_")[0], CENTER_COLOR)
        assert tuple(canvas[int(y), int(x)]) == expected, COCO17.names[k]
    # Every limb's midpoint (away from the joint discs) carries the limb's colour.
    for a, b in COCO17.skeleton:
        mx, my = (POSE[a] + POSE[b]) / 2
        if np.linalg.norm(POSE[a] - POSE[b]) < 20:
            continue   # too short to sample clear of the discs
        assert tuple(canvas[round(my), round(mx)]) == limb_color(COCO17, a, b), (a, b)
    # The left forearm's colour is orange, the right one's blue (not swapped).
    lx, ly = (POSE[name["left_elbow"]] + POSE[name["left_wrist"]]) / 2
    assert tuple(canvas[round(ly), round(lx)]) == LEFT_COLOR
    # Nothing is drawn far from the skeleton.
    lit = canvas.any(2)
    assert not lit[:20].any() and not lit[:, :40].any() and not lit[:, 165:].any()
    ys, xs = np.nonzero(lit)
    assert 25 <= ys.min() and ys.max() <= 290


def test_low_score_keypoints_and_their_limbs_are_not_drawn():
    scores = np.ones(17, np.float32)
    left_wrist = COCO17.names.index("left_wrist")
    scores[left_wrist] = 0.1
    canvas = _render(scores, kpt_thr=0.3, draw_boxes=False)
    x, y = POSE[left_wrist]
    assert not canvas[int(y) - 2: int(y) + 3, int(x) - 2: int(x) + 3].any()   # no disc at the wrist
    ex, ey = POSE[COCO17.names.index("left_elbow")]
    mx, my = (x + ex) / 2, (y + ey) / 2
    assert not canvas[round(my), round(mx)].any()                            # no forearm either


def test_box_is_drawn_on_its_edges():
    canvas = draw_poses(np.zeros((100, 100, 3), np.uint8), np.zeros((1, 17, 3)), COCO17,
                        boxes=np.array([[20, 30, 40, 50, 0.9]]), thickness=2)
    assert canvas[55, 20].any() and canvas[55, 60].any() and canvas[30, 40].any() and canvas[80, 40].any()
    assert not canvas[55, 40].any()   # the inside stays clear


def test_write_image_keeps_rgb_colours(tmp_path):
    img = np.zeros((10, 10, 3), np.uint8)
    img[..., 0] = 255   # red in RGB
    path = write_image(tmp_path / "vis" / "red.png", img)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]   # BGR on disk


def test_heatmap_overlay_lands_on_the_person():
    # One person's crop covers x 40..80, y 20..100 of a 120×160 image; its heatmap peaks in the middle.
    center, scale = np.array([60., 60.]), np.array([40., 80.])
    hm = np.zeros((1, 17, 32, 16), np.float32)
    hm[0, 3, 16, 8] = 1.0
    inv = warp_matrix(center, scale, 0, (16, 32), inv=True)
    heat = heatmap_to_image(hm, [inv], (120, 160))
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    assert abs(x - 60) <= 3 and abs(y - 60) <= 3 and heat.max() > 0.2
    blended = overlay_heatmap(np.zeros((120, 160, 3), np.uint8), heat)
    assert blended[y, x].any() and not blended[5, 5].any()


def test_video_writer_writes_frames(tmp_path):
    writer = VideoOverlayWriter(tmp_path / "out.mp4", fps=5)
    for _ in range(3):
        writer.write(np.full((32, 48, 3), 128, np.uint8))
    writer.close()
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_each_track_is_drawn_in_its_own_colour_with_its_id():
    """Two people with track ids 0 and 3 and one untracked (-1): each one's limbs and box in its track's colour
    (hues apart), keypoints still by side; the untracked one grey; the labels are written above the boxes."""
    from frpose_cli.inference.draw import UNTRACKED_COLOR, track_color
    kp = np.concatenate([POSE, np.ones((17, 1), np.float32)], 1)
    people = np.stack([kp, kp + [200, 0, 0], kp + [400, 0, 0]])
    boxes = np.array([[40, 20, 120, 270, 0.9], [240, 20, 120, 270, 0.8], [440, 20, 120, 270, 0.7]], np.float32)
    canvas = draw_poses(np.zeros((300, 600, 3), np.uint8), people, COCO17, boxes, thickness=3, radius=4,
                        track_ids=[0, 3, -1])
    colours = [track_color(0), track_color(3), UNTRACKED_COLOR]
    assert len(set(colours)) == 3
    name = {n: i for i, n in enumerate(COCO17.names)}
    for p, colour in enumerate(colours):
        mx, my = (POSE[name["left_hip"]] + POSE[name["left_knee"]]) / 2 + [200 * p, 0]
        assert tuple(canvas[round(my), round(mx)]) == colour, p               # a limb
        assert tuple(canvas[150, 40 + 200 * p]) == colour, p                  # the box's left edge
        assert tuple(canvas[int(POSE[0, 1]), int(POSE[0, 0]) + 200 * p]) == CENTER_COLOR   # the nose: by side
        label = canvas[2:19, 42 + 200 * p:100 + 200 * p]
        assert (label == colour).all(-1).sum() > 20, p                        # "#0 0.90", "#3 0.80", "#- 0.70"
    assert track_color(0) != track_color(1) and track_color(5) == track_color(5)
