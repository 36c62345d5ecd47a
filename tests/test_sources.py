"""Sources for `frpose predict`: enumeration order, list files, globs, videos and robust decoding."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from frpose_cli.errors import FrposeError
from frpose_cli.data.images import ImageReadError, read_image, to_rgb8
from frpose_cli.data.images import decode_image_bytes as decode_with_warning
from frpose_cli.data.sources import Source, natural_key


def decode_image_bytes(data):
    image, warning = decode_with_warning(data)
    assert warning is None
    return image

VAL = Path(__file__).parent / "data" / "coco" / "val2017"
REAL_JPEG = VAL / "000000000785.jpg"


def _png_bytes(array) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def test_natural_sort_orders_numbers_by_value():
    names = ["img10.jpg", "img2.jpg", "IMG1.jpg", "img1b.jpg", "a/img3.jpg"]
    assert sorted(names, key=natural_key) == ["a/img3.jpg", "IMG1.jpg", "img1b.jpg", "img2.jpg", "img10.jpg"]


def test_real_jpeg_is_rgb_not_bgr():
    rgb, warning = read_image(REAL_JPEG)
    assert warning is None
    bgr = cv2.imread(str(REAL_JPEG), cv2.IMREAD_COLOR)
    assert rgb.dtype == np.uint8 and rgb.shape == bgr.shape
    assert np.array_equal(rgb, bgr[:, :, ::-1])


def test_gray_rgba_16bit_and_float_convert_to_8bit_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = decode_image_bytes(_png_bytes(gray))
    assert out.shape == (3, 4, 3) and np.array_equal(out[..., 0], gray) and np.array_equal(out[..., 2], gray)

    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 200, 10, 0   # blue, fully transparent
    out = decode_image_bytes(_png_bytes(bgra))
    assert out.shape == (2, 2, 3) and out[0, 0].tolist() == [10, 0, 200]

    deep = np.full((2, 3), 65535, np.uint16)
    deep[0, 0] = 0
    deep[0, 1] = 32896   # ≈ half range
    out = decode_image_bytes(_png_bytes(deep))
    assert out.dtype == np.uint8 and out[1, 1].tolist() == [255, 255, 255]
    assert out[0, 0, 0] == 0 and 126 <= out[0, 1, 0] <= 129

    deep_bgr = np.zeros((2, 2, 3), np.uint16)
    deep_bgr[..., 2] = 65535   # red in BGR order
    assert decode_image_bytes(_png_bytes(deep_bgr))[0, 0].tolist() == [255, 0, 0]

    assert to_rgb8(np.full((2, 2), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]


def test_bad_files_raise_image_read_error(tmp_path):
    data = REAL_JPEG.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    png = _png_bytes(np.zeros((50, 50, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(png[:-20])
    for name, why in [("truncated.jpg", "truncated"), ("garbage.jpg", "not an image|truncated"), ("notes.txt", "not an image"),
                      ("empty.png", "empty"), ("cut.png", "truncated")]:
        with pytest.raises(ImageReadError, match=why):
            read_image(tmp_path / name)
    with pytest.raises(ImageReadError, match="unreadable"):
        read_image(tmp_path / "missing.jpg")


def test_folder_is_recursive_natural_and_reports_bad_files(tmp_path):
    img = cv2.imread(str(REAL_JPEG))
    small = cv2.resize(img, (32, 24))
    for name in ["b10.jpg", "b2.jpg", "sub/a1.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), small)
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "c3.jpg").write_text("not an image either, named like one")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    items = list(Source(str(tmp_path)))
    assert [i.file_name for i in items] == ["b2.jpg", "b10.jpg", "c3.jpg", "readme.txt", "sub/a1.png"]
    assert [i.index for i in items if not i.ignored] == [0, 1, 2, 3]
    assert [i.file_name for i in items if i.ignored] == ["readme.txt"]   # listed, not a failure
    bad = [i for i in items if i.error]
    assert [i.file_name for i in bad] == ["c3.jpg"] and bad[0].image is None
    good = [i for i in items if not i.error and not i.ignored]
    assert all(i.image.shape == (24, 32, 3) for i in good)


def _jpeg_with_exif_orientation(orientation: int) -> bytes:
    from PIL import Image   # torchvision's dependency; only the test writes EXIF
    import io
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_ignored_by_every_reader(tmp_path, coco_root):
    """One policy: pixels as stored (COCO's convention), in predict's and train/eval's reader alike."""
    import json
    from frpose_cli.cards import load_card
    from frpose_cli.data.codecs import codec_for_card
    from frpose_cli.data.dataset import CocoPoseDataset
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "rot.jpg").write_bytes(_jpeg_with_exif_orientation(6))   # "rotate 90° to view"
    [item] = list(Source(str(tmp_path / "images" / "rot.jpg")))
    assert item.image.shape == (40, 80, 3) and item.warning is None   # stored 80 wide, not turned
    ann = {"images": [{"id": 1, "file_name": "rot.jpg", "width": 80, "height": 40}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 800.0,
                            "bbox": [0, 0, 80, 40], "num_keypoints": 1, "keypoints": [10, 10, 2] + [0, 0, 0] * 16}],
           "categories": json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())["categories"]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    card = load_card("sbn-r18", (64, 32))
    ds = CocoPoseDataset(tmp_path / "ann.json", tmp_path / "images", card, codec_for_card(card), train=False)
    sample = ds[0]
    assert sample["valid"]
    crop = (sample["image"] * torch.tensor(card.normalize["std"]).view(3, 1, 1)
            + torch.tensor(card.normalize["mean"]).view(3, 1, 1))
    # the box is the whole stored image (left half white): the crop's left columns are white, right dark
    h, w = crop.shape[1:]
    assert crop[:, h // 2, w // 4].min() > 0.9 and crop[:, h // 2, 3 * w // 4].max() < 0.1


def test_damaged_jpeg_is_decoded_with_a_warning_not_silently(tmp_path, capfd):
    data = bytearray(REAL_JPEG.read_bytes())
    scan = data.rfind(b"\xff\xda")
    data[scan + 400:scan + 430] = bytes(30)   # zero some entropy-coded bytes
    image, warning = decode_with_warning(bytes(data))
    assert image.shape == cv2.imread(str(REAL_JPEG)).shape
    assert warning and warning.startswith("damaged JPEG data, decoded anyway (libjpeg: Corrupt JPEG data")
    assert "Corrupt JPEG" not in capfd.readouterr().err, "libjpeg's own stderr line is captured"


def test_glob_list_file_and_single_image(tmp_path):
    items = list(Source(str(VAL / "*.jpg")))
    assert [i.file_name for i in items] == sorted(p.name for p in VAL.glob("*.jpg"))

    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{VAL / '000000040083.jpg'}\n\n{VAL / '000000000785.jpg'}\nmissing.jpg\n")
    items = list(Source(str(listing)))
    assert [Path(i.file_name).name for i in items] == ["000000040083.jpg", "000000000785.jpg", "missing.jpg"]
    assert items[2].error == "no such file" and items[0].image is not None

    single = list(Source(str(REAL_JPEG)))
    assert len(single) == 1 and single[0].file_name == REAL_JPEG.name


def test_empty_or_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FrposeError, match="no images or videos found"):
        list(Source(str(tmp_path)))
    with pytest.raises(FrposeError, match="source not found"):
        Source(str(tmp_path / "nope"))
    with pytest.raises(FrposeError, match="no images or videos found"):
        list(Source(str(tmp_path / "*.jpg")))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FrposeError, match=r"no images or videos found in source .* \(1 other files ignored\)"):
        list(Source(str(tmp_path)))


def make_video(path, frames=7, size=(64, 48), fps=10.0, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, :, 2] = 255          # red in BGR
        frame[:8, : 8 * (i + 1)] = 255
        writer.write(frame)
    writer.release()
    return path


def test_video_every_nth_frame_in_rgb(tmp_path):
    video = make_video(tmp_path / "clip.mp4")
    items = list(Source(str(video), vid_stride=3))
    assert [i.frame for i in items] == [0, 3, 6]
    assert [i.index for i in items] == [0, 1, 2]
    frame = items[1].image
    assert frame.shape == (48, 64, 3)
    r, g, b = frame[30, 30].astype(int)
    assert r > 200 and b < 60   # red stays red: frames are converted BGR → RGB
    assert abs(items[0].fps - 10 / 3) < 1e-3

    # a video cut short: its frames are used and the shortfall against the container's count reported
    avi = make_video(tmp_path / "clip.avi", frames=20, fourcc="MJPG")
    data = avi.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.6)])
    cut = list(Source(str(tmp_path / "cut.avi")))
    frames = [i for i in cut if i.image is not None]
    [note] = [i for i in cut if i.image is None]
    assert 0 < len(frames) < 20 and note.error is None
    assert note.warning == f"video ended after {len(frames)} of the 20 frames its container announces (truncated or damaged)"

    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    broken = list(Source(str(tmp_path / "broken.mp4")))
    assert len(broken) == 1 and broken[0].error
