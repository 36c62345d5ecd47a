"""Keypoint sets from an annotation category: flip pairs, skeleton, OKS σ and their resolution."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frpose_cli.inference.draw import CENTER_COLOR, LEFT_COLOR, RIGHT_COLOR, draw_poses, side_color
from frpose_cli.errors import FrposeError
from frpose_cli.data.keypoints import (COCO17, COCO17_OKS_SIGMAS, KeypointSpec, pairs_from_names, side_of,
                                       spec_from_category)
from frpose_cli.data.oks_sigmas import DEFAULT_OKS_SIGMA, FROM_COCO, FROM_DEFAULT, FROM_FLAG, parse_sigmas, resolve_sigmas

FIVE = ["nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]


def test_coco_subset_category_gives_pairs_coco_limbs_and_no_sigmas_yet():
    spec = spec_from_category({"keypoints": FIVE})
    assert spec.flip_pairs == ((1, 2), (3, 4)) and spec.flip_index() == [0, 2, 1, 4, 3]
    # COCO's limbs between the kept joints: hips, shoulder-hip on each side, shoulders.
    assert set(spec.skeleton) == {(3, 4), (1, 3), (2, 4), (1, 2)}
    assert spec.sigmas is None
    assert spec_from_category({"keypoints": FIVE, "skeleton": [[1, 2]]}).skeleton == ((0, 1),)   # 1-based


def test_category_flip_information_wins_over_names():
    names = ["a", "b", "c"]
    assert not spec_from_category({"keypoints": names}).can_flip
    by_index = spec_from_category({"keypoints": names, "flip_indices": [2, 1, 0]})
    assert by_index.flip_pairs == ((0, 2),) and by_index.flip_index() == [2, 1, 0]
    assert spec_from_category({"keypoints": names, "flip_pairs": [[0, 1]]}).flip_index() == [1, 0, 2]
    # Declared symmetric-free (all centre points): flipping is allowed, nothing is swapped.
    centre = spec_from_category({"keypoints": names, "flip_pairs": []})
    assert centre.can_flip and centre.flip_index() == [0, 1, 2]


@pytest.mark.parametrize("extra,needle", [
    ({"flip_indices": [1, 2, 0]}, "mirror partner"),          # not an involution
    ({"flip_indices": [0, 1]}, "mirror partner"),              # wrong length
    ({"flip_pairs": [[0, 3]]}, "out of range"),
    ({"flip_pairs": [[0, 1], [1, 2]]}, "one pair"),
    ({"flip_pairs": "0,1"}, "index pairs"),
    ({"skeleton": [[0, 1]]}, "1-based"),
    ({"sigmas": [0.1, 0.1]}, "2 values for 3"),
    ({"sigmas": [0.1, -1, 0.1]}, "positive"),
    ({"sigmas": "0.1"}, "list of 3"),
])
def test_bad_category_metadata_is_a_one_line_error(extra, needle):
    with pytest.raises(FrposeError, match=needle):
        spec_from_category({"keypoints": ["a", "b", "c"], **extra}, "f.json")


def test_side_words_in_many_spellings_pair_up():
    assert pairs_from_names(["L_F_Paw", "R_F_Paw", "Nose", "Tail"])[0] == ((0, 1),)
    assert pairs_from_names(["wristRight", "wristLeft"])[0] == ((1, 0),)          # (left, right)
    assert pairs_from_names(["left-eye", "right-eye", "LEFT_EAR", "RIGHT_EAR"])[0] == ((0, 1), (2, 3))
    pairs, why = pairs_from_names(["left_hand", "nose"])
    assert pairs is None and "left_hand has no other-side partner" in why
    assert pairs_from_names(["head", "s1", "s2"]) == (None, "no keypoint name says left or right")
    assert (side_of("L_Shoulder"), side_of("nose"), side_of("shoulderRight")) == ("left", "", "right")


BASES = st.lists(st.sampled_from(["eye", "ear", "paw", "knee", "fin", "wing", "toe", "hip"]), min_size=1,
                 max_size=6, unique=True)
STYLES = st.sampled_from([("left_{}", "right_{}"), ("L_{}", "R_{}"), ("{}Left", "{}Right"), ("{}_l", "{}_r")])


@settings(max_examples=60, deadline=None)
@given(BASES, STYLES, st.integers(0, 3), st.randoms(use_true_random=False))
def test_paired_names_give_an_involution_that_swaps_sides(bases, style, centres, rnd):
    names = [style[0].format(b) for b in bases] + [style[1].format(b) for b in bases] + \
        [f"mid{i}" for i in range(centres)]
    rnd.shuffle(names)
    spec = KeypointSpec.from_names(names)
    perm = spec.flip_index()
    assert spec.can_flip and len(spec.flip_pairs) == len(bases)
    assert [perm[perm[i]] for i in range(len(names))] == list(range(len(names)))
    for i, j in enumerate(perm):
        assert (spec.side(i), spec.side(j)) in (("left", "right"), ("right", "left"), ("", ""))
        assert (i == j) == names[i].startswith("mid")


def test_spec_round_trips_through_its_dict_with_unknown_flip_and_sigmas():
    spec = spec_from_category({"keypoints": ["a", "b"], "sigmas": [0.05, 0.06]})
    back = KeypointSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.flip_pairs is None and back.sigmas == (0.05, 0.06)
    assert KeypointSpec.from_dict(COCO17.to_dict()) == COCO17


def test_sigmas_are_resolved_in_the_documented_order(tmp_path):
    warnings = []
    coco5 = spec_from_category({"keypoints": FIVE})
    got = resolve_sigmas(coco5, warn=warnings.append)                       # COCO names → COCO's table
    assert got.sigmas_from == FROM_COCO and got.sigmas == pytest.approx([COCO17_OKS_SIGMAS[i] for i in (0, 5, 6, 11, 12)])
    own = spec_from_category({"keypoints": FIVE, "sigmas": [0.1] * 5})     # the category's own
    assert resolve_sigmas(own).sigmas == (0.1,) * 5 and "category" in resolve_sigmas(own).sigmas_from
    assert resolve_sigmas(own, "0.02").sigmas == (0.02,) * 5                # --sigmas wins over the file
    renamed = spec_from_category({"keypoints": ["p1", "p2"]})
    recorded = renamed.with_sigmas([0.03, 0.04], FROM_FLAG)                 # a checkpoint's
    assert resolve_sigmas(renamed, recorded=recorded).sigmas == (0.03, 0.04)
    assert not warnings
    fallback = resolve_sigmas(renamed, warn=warnings.append)               # nothing known: default + warning
    assert fallback.sigmas == (DEFAULT_OKS_SIGMA,) * 2 and fallback.sigmas_from == FROM_DEFAULT
    assert len(warnings) == 1 and "warning: OKS σ 0.07 for all 2 keypoints" in warnings[0]
    resolve_sigmas(renamed, recorded=fallback, warn=warnings.append)        # a defaulted checkpoint says so again
    assert len(warnings) == 2 and "recorded in the checkpoint" in warnings[1]
    resolve_sigmas(renamed, "0.26,1.07", warn=warnings.append)              # pycocotools' ×10 values
    assert len(warnings) == 3 and "×10" in warnings[2]


def test_sigmas_option_forms_and_errors(tmp_path):
    names = ["p1", "p2", "p3"]
    assert parse_sigmas("0.1, 0.2,0.3", names) == [0.1, 0.2, 0.3]
    assert parse_sigmas("0.05", names) == [0.05] * 3
    (tmp_path / "list.json").write_text("[0.1, 0.2, 0.3]")
    (tmp_path / "named.json").write_text(json.dumps({"p3": 0.3, "p1": 0.1, "p2": 0.2}))
    (tmp_path / "short.json").write_text(json.dumps({"p1": 0.1}))
    assert parse_sigmas(tmp_path / "list.json", names) == parse_sigmas(tmp_path / "named.json", names) == [0.1, 0.2, 0.3]
    for text, needle in [("0.1,0.2", "2 values for 3"), ("a,b,c", "comma-separated"), ("0,0.1,0.1", "positive"),
                         (str(tmp_path / "short.json"), "no σ for p2, p3"), (str(tmp_path / "nope.json"), "no such file")]:
        with pytest.raises(FrposeError, match=needle):
            parse_sigmas(text, names)


def test_overlay_colours_follow_sides_of_a_custom_set_and_its_skeleton():
    spec = spec_from_category({"keypoints": ["L_Paw", "R_Paw", "Nose"], "skeleton": [[1, 3], [2, 3]]})
    assert [side_color(spec, k) for k in range(3)] == [LEFT_COLOR, RIGHT_COLOR, CENTER_COLOR]
    pts = np.array([[[20, 80, 1], [80, 80, 1], [50, 20, 1]]], np.float32)
    canvas = draw_poses(np.zeros((100, 100, 3), np.uint8), pts, spec, thickness=2, radius=3)
    assert tuple(canvas[80, 20]) == LEFT_COLOR and tuple(canvas[80, 80]) == RIGHT_COLOR
    assert tuple(canvas[20, 50]) == CENTER_COLOR
    assert canvas[50, 35].any() and canvas[50, 65].any()          # both limbs drawn to the nose
    assert not canvas[80, 50].any()                               # no limb between the paws
    # Pairs given by index colour unnamed points too (first of a pair left).
    indexed = spec_from_category({"keypoints": ["a", "b", "c"], "flip_pairs": [[2, 0]]})
    assert [indexed.side(k) for k in range(3)] == ["right", "", "left"]
