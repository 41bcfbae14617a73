"""Tests of cdgan_tf.data.folders: label files, pairing, decoding, the DAmageNet crop."""

import io
import pathlib

import numpy as np
from PIL import Image
import pytest

from cdgan_tf.data import folders
from cdgan_tf.data import image_files


def _pixels(height=8, width=12, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write(path, pixels=None, mode="RGB", fmt=None, **kwargs):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(_pixels() if pixels is None else pixels)
  if mode != "RGB":
    image = image.convert(mode)
  image.save(path, format=fmt, **kwargs)
  return str(path)


def _encoded(pixels, fmt, **kwargs):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


# Label files and class folders.

def test_read_label_file_keys_by_stem(tmp_path):
  path = tmp_path / "val.txt"
  path.write_text("ILSVRC2012_val_00000001.JPEG 65\n\nILSVRC2012_val_00000002.JPEG 970\n")
  assert folders.read_label_file(path) == {"ILSVRC2012_val_00000001": 65,
                                           "ILSVRC2012_val_00000002": 970}


@pytest.mark.parametrize("text, message", [
    ("a.JPEG 1\nb.JPEG\n", "val.txt:2: expected"),
    ("a.JPEG 1\nb.JPEG x\n", "val.txt:2: label 'x' is not an integer"),
    ("a.JPEG -3\n", "val.txt:1: label -3 is negative"),
    ("a.JPEG 1\na.png 2\n", "val.txt:2: a already has label 1"),
])
def test_read_label_file_bad_line_names_file_and_line(tmp_path, text, message):
  path = tmp_path / "val.txt"
  path.write_text(text)
  with pytest.raises(ValueError, match=message):
    folders.read_label_file(path)


def test_read_label_file_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    folders.read_label_file(tmp_path / "nope.txt")


def test_class_names_sorted_directories_only(tmp_path):
  for name in ("truck", "airplane", "cat", ".hidden"):
    (tmp_path / name).mkdir()
  (tmp_path / "README.txt").write_text("x")
  assert folders.class_names(tmp_path) == ["airplane", "cat", "truck"]
  with pytest.raises(ValueError, match="no class folders"):
    folders.class_names(tmp_path / "cat")
  with pytest.raises(NotADirectoryError, match="missing"):
    folders.class_names(tmp_path / "missing")


# Pairing.

def _kinds(skipped):
  return {(pathlib.Path(s.path).name, s.kind) for s in skipped}


def test_pair_folders_by_stem_lists_every_left_out_file(tmp_path):
  adv, clean = tmp_path / "adv", tmp_path / "clean"
  for stem in ("a", "b", "c", "d", "dup"):
    _write(adv / f"{stem}.png")
  _write(adv / "dup.jpg")  # Same stem twice on one side.
  (adv / "notes.txt").write_text("not an image")
  for stem in ("a", "b", "d", "dup", "e"):
    _write(clean / f"{stem}.JPEG")
  labels = tmp_path / "val.txt"
  labels.write_text("a.JPEG 3\nb.JPEG 7\nc.JPEG 1\ndup.JPEG 2\ne.JPEG 4\n")  # No d.

  pairs, skipped = folders.pair_folders(adv, clean, labels)

  assert pairs == [folders.Pair("a", str(adv / "a.png"), str(clean / "a.JPEG"), 3),
                   folders.Pair("b", str(adv / "b.png"), str(clean / "b.JPEG"), 7)]
  assert _kinds(skipped) == {
      ("c.png", folders.NO_CLEAN_PARTNER), ("e.JPEG", folders.NO_ADVERSARIAL_PARTNER),
      ("d.png", folders.MISSING_LABEL), ("d.JPEG", folders.MISSING_LABEL),
      ("dup.png", folders.DUPLICATE_KEY), ("dup.jpg", folders.DUPLICATE_KEY),
      ("dup.JPEG", folders.DUPLICATE_KEY), ("notes.txt", folders.NOT_AN_IMAGE)}
  reasons = {pathlib.Path(s.path).name: s.reason for s in skipped}
  assert "also dup.jpg" in reasons["dup.png"] and "also dup.png" in reasons["dup.jpg"]
  assert "not in label file" in reasons["d.png"]


def test_pair_folders_class_layout(tmp_path):
  adv, clean = tmp_path / "adv", tmp_path / "clean"
  for cls in ("dog", "cat"):
    for i in range(2):
      _write(clean / cls / f"{i:04d}.jpg")
      _write(adv / cls / f"{i:04d}.png")
  _write(adv / "stray.png")  # Not inside a class folder.
  _write(clean / "bird" / "0000.jpg")  # A class without adversarial images.

  pairs, skipped = folders.pair_folders(adv, clean)

  assert [(p.key, p.label) for p in pairs] == [
      ("cat/0000", 1), ("cat/0001", 1), ("dog/0000", 2), ("dog/0001", 2)]
  assert pairs[0].adversarial_path == str(adv / "cat" / "0000.png")
  assert _kinds(skipped) == {("stray.png", folders.NOT_AN_IMAGE),
                             ("0000.jpg", folders.NO_ADVERSARIAL_PARTNER)}


def test_pair_folders_bad_directory(tmp_path):
  (tmp_path / "clean").mkdir()
  with pytest.raises(NotADirectoryError, match="adversarial directory .*nowhere"):
    folders.pair_folders(tmp_path / "nowhere", tmp_path / "clean")


def test_list_labelled_images_both_layouts(tmp_path):
  flat = tmp_path / "flat"
  _write(flat / "x1.JPEG")
  _write(flat / "x2.JPEG")
  labels = tmp_path / "val.txt"
  labels.write_text("x1.JPEG 5\n")
  images, skipped = folders.list_labelled_images(flat, labels)
  assert images == [("x1", str(flat / "x1.JPEG"), 5)]
  assert _kinds(skipped) == {("x2.JPEG", folders.MISSING_LABEL)}

  _write(tmp_path / "tree" / "b" / "1.jpg")
  _write(tmp_path / "tree" / "a" / "1.jpg")
  images, skipped = folders.list_labelled_images(tmp_path / "tree")
  assert [(k, label) for k, _, label in images] == [("a/1", 0), ("b/1", 1)]
  assert not skipped


# Decoding.

def test_load_rgb_png_is_exact(tmp_path):
  pixels = _pixels(9, 7)
  loaded = image_files.load_image(_write(tmp_path / "x.png", pixels))
  np.testing.assert_array_equal(loaded.pixels, pixels)
  assert loaded.format == "PNG" and loaded.conversion is None


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"this is not an image", "cannot decode"),
])
def test_load_rgb_bad_bytes(tmp_path, content, reason):
  path = tmp_path / "bad.png"
  path.write_bytes(content)
  with pytest.raises(image_files.ImageError, match=reason) as info:
    image_files.load_rgb(path)
  assert info.value.path == str(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_load_rgb_truncated(tmp_path, fmt):
  data = _encoded(_pixels(64, 64), fmt)
  path = tmp_path / f"cut.{fmt.lower()}"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(image_files.ImageError, match="cannot decode"):
    image_files.load_rgb(path)


def test_load_rgb_missing_file(tmp_path):
  with pytest.raises(image_files.ImageError, match="cannot read"):
    image_files.load_rgb(tmp_path / "absent.png")


def test_load_rgb_conversions(tmp_path):
  pixels = _pixels(16, 16)
  gray = image_files.load_image(_write(tmp_path / "g.jpg", pixels, mode="L"))
  assert gray.pixels.shape == (16, 16, 3) and "grayscale" in gray.conversion
  assert (gray.pixels[..., 0] == gray.pixels[..., 2]).all()

  cmyk = image_files.load_image(_write(tmp_path / "c.jpg", pixels, mode="CMYK", quality=100))
  assert cmyk.pixels.shape == (16, 16, 3) and "CMYK" in cmyk.conversion
  assert np.abs(cmyk.pixels.astype(int) - pixels).mean() < 8  # Same picture.

  rgba = image_files.load_image(_write(tmp_path / "a.png", pixels, mode="RGBA"))
  np.testing.assert_array_equal(rgba.pixels, pixels)  # Alpha dropped, not composited.
  assert "alpha" in rgba.conversion

  deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
  path = tmp_path / "d.png"
  Image.fromarray(deep).save(path)
  loaded = image_files.load_image(path)
  np.testing.assert_array_equal(loaded.pixels[..., 1], (deep >> 8).astype(np.uint8))
  assert "16-bit" in loaded.conversion


# prepare_clean.

def test_prepare_clean_none_is_identity():
  pixels = _pixels()
  assert image_files.prepare_clean(pixels, "none") is pixels


def test_prepare_clean_rejects_bad_input():
  with pytest.raises(ValueError, match="crop='centre'"):
    image_files.prepare_clean(_pixels(), "centre")
  with pytest.raises(ValueError, match="uint8"):
    image_files.prepare_clean(_pixels().astype(np.float32), "damagenet")


def test_prepare_clean_damagenet_landscape_is_nearest_and_centred():
  # 112x250: short side x2 -> 224x500, crop columns [138, 362). NEAREST at an exact
  # factor 2 duplicates every pixel, so the result is known in closed form.
  pixels = _pixels(112, 250)
  out = image_files.prepare_clean(pixels, "damagenet")
  expected = np.repeat(np.repeat(pixels, 2, axis=0), 2, axis=1)[:, 138:362]
  np.testing.assert_array_equal(out, expected)


def test_prepare_clean_damagenet_portrait_offsets_truncate():
  # 149x75 portrait: 224 wide, int(224 / 75 * 149) = 445 rows; the odd surplus 221 gives
  # rows [int(110.5), int(334.5)) = [110, 334), not a rounded 111.
  assert int(224 / 75 * 149) == 445
  pixels = _pixels(149, 75)
  out = image_files.prepare_clean(pixels, "damagenet")
  resized = np.asarray(Image.fromarray(pixels).resize((224, 445), Image.NEAREST))
  np.testing.assert_array_equal(out, resized[110:334])
  assert not np.array_equal(out, resized[111:335])


def test_prepare_clean_damagenet_square_223_rows_stretched_like_opencv():
  # int(224 / 299 * 299) == 223 in floating point: DAmageNet's cv2.resize stretched the
  # 223 rows back to 224 (bilinear). The emulation stays within 1 of a float bilinear.
  assert int(224 / 299 * 299) == 223
  pixels = _pixels(299, 299)
  out = image_files.prepare_clean(pixels, "damagenet")
  rows = np.asarray(Image.fromarray(pixels).resize((224, 223), Image.NEAREST)).astype(float)
  y = np.clip((np.arange(224) + 0.5) * 223 / 224 - 0.5, 0, 222)
  low = np.floor(y).astype(int)
  t = (y - low)[:, None, None]
  reference = rows[low] * (1 - t) + rows[np.minimum(low + 1, 222)] * t
  assert out.shape == (224, 224, 3)
  assert np.abs(out - reference).max() <= 1.0
  np.testing.assert_array_equal(out[0], rows[0])  # First row maps onto source row 0.


def test_prepare_clean_damagenet_matches_real_pair(shared):
  """The published DAmageNet pair: every difference within AoA's L_inf bound."""
  demo = shared / "datasets" / "damagenet_demo"
  adv = image_files.load_rgb(demo / "DAmageNet" / "ILSVRC2012_val_00000046.png").astype(int)
  clean = image_files.prepare_clean(
      image_files.load_rgb(demo / "ILSVRC2012_img_val" / "ILSVRC2012_val_00000046.JPEG"),
      "damagenet").astype(int)
  difference = adv - clean
  rmse = float(np.sqrt(np.mean(difference**2)))
  print(f"DAmageNet demo pair RMSE (0-255): {rmse:.3f}")
  assert rmse < 8.0
  # AoA clips to clean +- 25.5 and saves with uint8 truncation: [-26, 25] exactly.
  assert difference.min() >= -26 and difference.max() <= 25
