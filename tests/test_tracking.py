"""The tracker, the One Euro smoother and a sequence's stages, on real COCO people moved as a camera
pans (ground truth known) and on hypothesis-drawn frames."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from frpose_cli.data.keypoints import COCO17_OKS_SIGMAS
from frpose_cli.tracking.sequence import SequenceTracker
from frpose_cli.tracking.smoothing import KeypointSmoother, OneEuroFilter, OneEuroParams
from frpose_cli.tracking.tracker import LIFETIME, PoseTracker, iou_matrix, keypoint_box

ANN = Path(__file__).parent / "data" / "coco" / "annotations" / "person_keypoints_val2017.json"
SIGMAS = np.array(COCO17_OKS_SIGMAS)


def coco_people(file_name="000000197388.jpg", min_keypoints=10):
    """A real image's annotated people: (P, 17, 3) keypoints (score 1 where labelled, 0 elsewhere), (P, 5) boxes."""
    data = json.loads(ANN.read_text())
    image_id = next(im["id"] for im in data["images"] if im["file_name"] == file_name)
    anns = [a for a in data["annotations"] if a["image_id"] == image_id and a["num_keypoints"] >= min_keypoints]
    kp = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
    kp[..., 2] = (kp[..., 2] > 0).astype(np.float64)
    boxes = np.array([[*a["bbox"], 1.0] for a in anns], np.float64)
    return kp, boxes


def panned(kp, boxes, frames, step=(3.0, -1.0), noise=0.0, seed=0):
    """The people as a camera panning ``step`` px per frame sees them, keypoints jittered by ``noise`` px."""
    rng = np.random.default_rng(seed)
    for f in range(frames):
        shift = -np.asarray(step) * f
        k = kp.copy()
        k[..., :2] += shift + rng.normal(0, noise, k[..., :2].shape)
        b = boxes.copy()
        b[:, :2] += shift
        yield f, k, b


def test_real_people_keep_their_ids_through_a_pan_with_jitter():
    kp, boxes = coco_people()
    assert len(kp) >= 4
    tracker = PoseTracker(SIGMAS)
    first = None
    for f, k, b in panned(kp, boxes, 40, noise=2.0):
        ids = tracker.update(k, b, f)
        if first is None:
            first = ids.copy()
            assert sorted(first) == list(range(len(kp)))
        assert list(ids) == list(first), f"identity switch at frame {f}: {ids} vs {first}"


def test_a_person_absent_for_the_whole_lifetime_comes_back_with_the_same_id():
    """The documented lifetime (30 frames) is the number of missed frames a track lives through; the pan moves
    the person 3 px a frame meanwhile, so they come back where their motion says."""
    kp, boxes = coco_people()
    tracker = PoseTracker(SIGMAS)
    gone = range(5, 5 + LIFETIME)
    ids_of_0 = []
    for f, k, b in panned(kp, boxes, 5 + LIFETIME + 5, noise=1.0):
        show = np.ones(len(k), bool)
        if f in gone:
            show[0] = False
        ids = tracker.update(k[show], b[show], f)
        if show[0]:
            ids_of_0.append(ids[0])
    assert len(set(ids_of_0)) == 1
    assert tracker.next_id == len(kp)   # nobody got a second id


def test_a_person_absent_longer_than_the_lifetime_gets_a_new_id():
    kp, boxes = coco_people()
    tracker = PoseTracker(SIGMAS)
    before = tracker.update(kp, boxes, 0)[0]
    after = tracker.update(kp, boxes, LIFETIME + 2)[0]   # frames 1 … LIFETIME + 1 missed
    assert after != before and after >= len(kp)   # every id of frame 0 has ended


def test_a_moving_person_is_found_again_where_its_motion_says():
    """A person moving 12 px a frame is hidden for 6 frames: by then it is 72+ px away from where it was
    last seen (IoU and OKS with the last pose ~0), but where its velocity predicts."""
    kp, boxes = coco_people()
    k0, b0 = kp[:1], boxes[:1]
    tracker = PoseTracker(SIGMAS)
    for f in (0, 1, 8):
        moved, b = k0.copy(), b0.copy()
        moved[..., 0] += 12 * f
        b[:, 0] += 12 * f
        assert tracker.update(moved, b, f)[0] == 0


def test_the_motion_prediction_counts_for_oks_alone():
    """With the IoU pass off (threshold 1), a person hidden 6 frames while moving 12 px a frame is matched by the
    OKS of the pose where its velocity puts it: the last pose alone is too far away."""
    kp, boxes = coco_people()
    tracker = PoseTracker(SIGMAS, match_iou=1.0)
    rng = np.random.default_rng(0)
    for f in (0, 1, 8):
        moved = kp[:1].copy()
        moved[..., 0] += 12 * f
        moved[..., :2] += rng.normal(0, 0.5, moved[..., :2].shape)   # no box is the predicted one exactly
        assert tracker.update(moved, boxes[:1], f)[0] == 0, f


def test_one_track_gives_its_id_to_one_pose_only():
    """Two poses both like a track's (a duplicate box the NMS kept): the better one continues it, the other starts
    a new track."""
    kp, boxes = coco_people()
    tracker = PoseTracker(SIGMAS)
    tracker.update(kp[:1], boxes[:1], 0)
    near = kp[:1].copy()
    near[..., 0] += 3
    ids = tracker.update(np.concatenate([near, kp[:1]]), np.concatenate([boxes[:1], boxes[:1]]), 1)
    assert list(ids) == [1, 0]


def test_a_pose_seen_too_little_or_too_small_is_untracked_but_kept():
    kp, boxes = coco_people()
    few = kp[:1].copy()
    few[0, :, 2] = 0.0
    few[0, [0, 15], 2] = 1.0          # nose and an ankle: a big box, but 2 keypoints < MIN_KEYPOINTS
    small = kp[:1].copy()
    small[0, :, :2] = small[0, :, :2] * 0.1   # every keypoint, but a box of ~1/100 the area: < MIN_AREA px²
    ok = kp[:1]
    ids = PoseTracker(SIGMAS).update(np.concatenate([few, small, ok]), np.repeat(boxes[:1], 3, 0), 0)
    assert list(ids) == [-1, -1, 0]


@st.composite
def frames_of_people(draw):
    n = draw(st.integers(1, 5))
    frames = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    centres = rng.uniform(50, 600, (n, 2))
    sizes = rng.uniform(30, 250, n)
    shape = rng.normal(0, 0.25, (n, 17, 2))
    seq = []
    for f in range(frames):
        present = rng.random(n) > 0.25
        centres = centres + rng.normal(0, 8, centres.shape)
        kp = np.concatenate([centres[:, None] + shape * sizes[:, None, None], rng.uniform(0, 1, (n, 17, 1))], -1)
        b = np.concatenate([kp[..., :2].min(1), kp[..., :2].max(1) - kp[..., :2].min(1), rng.uniform(0, 1, (n, 1))], 1)
        order = rng.permutation(int(present.sum()))
        seq.append((kp[present], b[present], order))
    return seq


@given(frames_of_people())
@settings(max_examples=60, deadline=None)
def test_ids_are_never_reused_and_a_permuted_frame_gives_the_same_tracks(seq):
    a, b = PoseTracker(SIGMAS, lifetime=1), PoseTracker(SIGMAS, lifetime=1)
    seen_ended = set()
    for f, (kp, boxes, order) in enumerate(seq):
        ids_a = a.update(kp, boxes, f)
        ids_b = b.update(kp[order], boxes[order], f)
        assert list(ids_b) == list(ids_a[order])
        tracked = ids_a[ids_a >= 0]
        assert len(set(tracked)) == len(tracked)          # one pose per track in a frame
        assert not (set(tracked) & seen_ended)            # an ended track's id never comes back
        seen_ended |= {i for i in range(a.next_id) if i not in a.tracks}


def test_iou_and_keypoint_box():
    assert iou_matrix([[0, 0, 10, 10]], [[5, 0, 10, 10], [20, 20, 5, 5]]).tolist() == [[50 / 150, 0.0]]
    kp = np.array([[0, 0, 1], [10, 20, 1], [100, 100, 0.1]], np.float64)
    assert keypoint_box(kp, 1.0).tolist() == [0, 0, 10, 20]
    assert keypoint_box(kp, 1.25).tolist() == [-1.25, -2.5, 12.5, 25.0]
    assert keypoint_box(kp[:1]) is None


# -- smoothing -------------------------------------------------------------------------------------

@given(st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=2), st.integers(2, 40),
       st.floats(1.0, 500.0), st.floats(0.001, 0.5))
@settings(max_examples=80, deadline=None)
def test_the_filter_of_a_constant_signal_is_that_constant(point, n, scale, dt):
    f = OneEuroFilter()
    for i in range(n):
        assert f(np.array([point]), i * dt, scale).tolist() == [point]


def one_euro_reference(points, times, scale, min_cutoff, beta, d_cutoff):
    """The One Euro filter as the paper writes it (Casiez et al. 2012, Algorithm 1), one 2-D point, its speed the
    norm of the derivative over ``scale``: written again here, without numpy broadcasting, as the oracle."""
    def alpha(cutoff, te):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / te)
    out, x_prev, dx_prev, t_prev = [], None, 0.0, None
    for (x, y), t in zip(points, times):
        if x_prev is None:
            x_prev, t_prev = (x, y), t
            out.append((x, y))
            continue
        te = max(t - t_prev, 1e-3)
        speed = np.hypot(x - x_prev[0], y - x_prev[1]) / te / scale
        dx_prev = dx_prev + alpha(d_cutoff, te) * (speed - dx_prev)
        a = alpha(min_cutoff + beta * dx_prev, te)
        x_prev, t_prev = (x_prev[0] + a * (x - x_prev[0]), x_prev[1] + a * (y - x_prev[1])), t
        out.append(x_prev)
    return np.array(out)


@given(st.integers(0, 2**31 - 1), st.floats(0.2, 3.0), st.floats(0.0, 8.0), st.floats(0.2, 5.0), st.floats(10, 400))
@settings(max_examples=60, deadline=None)
def test_the_filter_is_the_papers_on_uneven_timestamps(seed, min_cutoff, beta, d_cutoff, scale):
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.005, 0.2, 25))          # dropped frames, bursts: the clock decides
    points = np.cumsum(rng.normal(0, 5, (25, 2)), 0)
    f = OneEuroFilter(OneEuroParams(min_cutoff, beta, d_cutoff))
    got = np.array([f(p[None], t, scale)[0] for p, t in zip(points, times)])
    assert np.allclose(got, one_euro_reference(points, times, scale, min_cutoff, beta, d_cutoff), atol=1e-9)


def jittered_walk(frames=90, fps=30.0, jitter=0.01, step_at=None, step=0.3, seed=1):
    """A keypoint of a person 1 unit tall walking 0.5 units/s, jittered; optionally a step."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    truth = np.stack([0.5 * t, np.zeros(frames)], 1)
    if step_at is not None:
        truth[step_at:, 1] += step
    return t, truth, truth + rng.normal(0, jitter, truth.shape)


def smoothed(t, x, params=OneEuroParams(), scale=1.0):
    f = OneEuroFilter(params)
    return np.array([f(x[i:i + 1], t[i], scale)[0] for i in range(len(t))])


def acceleration(x):
    return np.linalg.norm(np.diff(x, 2, axis=0), axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_smoothing_halves_the_acceleration_of_jitter_and_follows_a_step_within_three_frames(seed):
    """Jitter of 1 % of the person's size: the smoothed walk's frame-to-frame acceleration is at most half
    the raw one's; a step of 30 % of the size is 90 % followed by its third frame (mean over the step's
    last frames, so one noisy sample does not decide)."""
    t, truth, raw = jittered_walk(seed=seed)
    out = smoothed(t, raw)
    assert acceleration(out[5:]).mean() <= 0.5 * acceleration(raw[5:]).mean()
    residual = []
    for s in range(8):
        t, truth, raw = jittered_walk(step_at=45, seed=100 * seed + s)
        residual.append(abs(smoothed(t, raw)[45 + 2, 1] - truth[47, 1]))
    assert np.mean(residual) <= 0.1 * 0.3, residual


def test_the_filter_works_in_person_sizes():
    """The same motion at 10× the size, with 10× the scale, gives 10× the output."""
    t, _, raw = jittered_walk()
    assert np.allclose(smoothed(t, raw * 10, scale=10.0), smoothed(t, raw) * 10)


def test_keypoint_smoother_passes_untracked_people_and_scores():
    kp, _ = coco_people()
    sm = KeypointSmoother()
    sm.smooth(np.arange(len(kp)), kp, 0.0)
    moved = kp.copy()
    moved[..., :2] += 5
    out = sm.smooth(np.r_[-1, np.arange(1, len(kp))], moved, 1 / 30)
    assert np.array_equal(out[0], moved[0])                      # untracked: raw
    assert np.all(out[1:, :, 0] < moved[1:, :, 0])               # tracked: lagging behind the jump
    assert np.array_equal(out[..., 2], moved[..., 2])            # scores untouched


@pytest.mark.parametrize("bad", [dict(min_cutoff=0), dict(beta=-1), dict(d_cutoff=float("nan"))])
def test_filter_parameters_are_checked(bad):
    with pytest.raises((ValueError, TypeError)):
        OneEuroParams(**bad)


# -- a sequence's stages -------------------------------------------------------------------------------

def test_detection_every_n_frames_propagates_boxes_between_and_merges_without_doubles():
    kp, boxes = coco_people()
    seq = SequenceTracker(SIGMAS, det_every=3)
    assert [seq.detects(i) for i in range(7)] == [True, False, False, True, False, False, True]
    b0, prop0 = seq.boxes(0, boxes)
    assert not prop0.any() and len(b0) == len(kp)
    keep, ids, smooth = seq.assign(kp, b0, prop0, 0, 0.0)
    assert keep.all() and smooth is None and sorted(ids) == list(range(len(kp)))
    b1, prop1 = seq.boxes(1, None)                   # between detections: one box per person from the pose
    assert prop1.all() and len(b1) == len(kp)
    _, prop_ids = seq.tracker.propagated(1)
    for box, tid in zip(b1, prop_ids):
        assert np.allclose(box[:4], keypoint_box(kp[list(ids).index(tid)]))
    seq.assign(kp, b1, prop1, 1, 1 / 30)
    missed = boxes[1:]                                 # the detector misses person 0 on frame 3
    b3, prop3 = seq.boxes(3, missed)
    assert len(b3) == len(kp) and prop3.sum() == 1   # only the missed person's propagated box is added
    assert iou_matrix(b3[prop3], boxes[:1])[0, 0] > 0.3


def test_a_propagated_box_that_finds_nobody_is_dropped_a_detected_one_is_kept():
    kp, boxes = coco_people()
    seq = SequenceTracker(SIGMAS, det_every=5)
    weak = kp.copy()
    weak[0, :, 2] = 0.05      # a detector box where the network sees little: kept (untracked)
    keep, ids, _ = seq.assign(weak, boxes, np.zeros(len(kp), bool), 0, 0.0)
    assert keep.all() and ids[0] == -1
    seq = SequenceTracker(SIGMAS, det_every=5)
    seq.assign(kp, boxes, np.zeros(len(kp), bool), 0, 0.0)
    b1, prop1 = seq.boxes(1, None)
    empty = kp.copy()
    empty[0, :, 2] = 0.05       # the network sees nobody in person 0's box
    keep, ids, _ = seq.assign(empty, b1, prop1, 1, 1 / 30)
    assert not keep[0] and keep[1:].all() and len(ids) == len(kp) - 1


# -- offline smoothing (--smooth-offline) ----------------------------------------------------------------

@given(st.integers(0, 2**31 - 1), st.integers(12, 30))
@settings(max_examples=40, deadline=None)
def test_the_window_smoother_is_savitzky_golay_where_the_window_is_whole(seed, n):
    """Every frame seen, away from the ends: SciPy's savgol_filter(window 9, order 2); a quadratic motion comes
    out unchanged everywhere (ends included), so there is no lag; frames come out 4 late, in order."""
    from scipy.signal import savgol_filter
    from frpose_cli.tracking.offline import HALF, WindowSmoother
    rng = np.random.default_rng(seed)
    raw = np.concatenate([np.cumsum(rng.normal(0, 3, (n, 1, 17, 2)), 0), np.ones((n, 1, 17, 1))], -1)
    quad = raw.copy()
    t = np.arange(n)[:, None, None]
    quad[..., 0], quad[..., 1] = 0.3 * t ** 2 - 2 * t + 5, -0.1 * t ** 2 + 4 * t
    for signal_, exact in ((raw, False), (quad, True)):
        w, out = WindowSmoother(), []
        for f in range(n):
            released = w.push(f, [7], signal_[f], f)
            assert [payload for payload, _ in released] == ([f - HALF] if f >= HALF else [])
            out += released
        out += w.flush()
        got = np.stack([kp for _, kp in out])
        assert [payload for payload, _ in out] == list(range(n))
        if exact:
            assert np.allclose(got, signal_, atol=1e-6)
        else:
            want = savgol_filter(signal_[..., :2], 9, 2, axis=0)
            assert np.allclose(got[HALF:n - HALF, ..., :2], want[HALF:n - HALF], atol=1e-6)
            assert np.array_equal(got[..., 2], signal_[..., 2])


def test_the_window_smoother_leaves_unsure_keypoints_out_and_keeps_untracked_people_raw():
    from frpose_cli.tracking.offline import WindowSmoother
    w, out = WindowSmoother(), []
    kp = np.zeros((9, 2, 17, 3))
    kp[..., 2] = 0.9
    kp[:, :, 0, 0] = np.arange(9)[:, None]        # nose moving 1 px a frame
    kp[4, :, 0, :] = [100.0, 100.0, 0.1]          # frame 4: the nose unsure, far off
    for f in range(9):
        out += w.push(f, [3, -1], kp[f], f)
    out += w.flush()
    smoothed = dict(out)
    assert smoothed[4][0, 0, 0] == pytest.approx(4.0) and smoothed[4][0, 0, 1] == pytest.approx(0.0)
    assert smoothed[3][0, 0, 0] == pytest.approx(3.0)    # the unsure frame pulled no neighbour off
    assert np.array_equal(smoothed[4][1], kp[4, 1])       # untracked: raw
