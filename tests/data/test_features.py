"""Round-trip tests of the TFRecord schema (make_example -> serialize -> parse_example)."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.data import features


def _image(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _round_trip(example: tf.train.Example):
  return features.parse_example(tf.constant(example.SerializeToString()))


def test_png_round_trip_is_exact():
  adversarial, clean = _image(6, 5, 0), _image(4, 7, 1)
  example = features.make_example(
      tf.io.encode_png(adversarial).numpy(), (6, 5), tf.io.encode_png(clean).numpy(),
      (4, 7), label=725, file_name="ILSVRC2012_val_00000046")
  parsed = _round_trip(example)
  assert parsed["adversarial"].dtype == tf.float32
  np.testing.assert_allclose(parsed["adversarial"], adversarial / 255.0, atol=1e-6)
  np.testing.assert_allclose(parsed["clean"], clean / 255.0, atol=1e-6)
  assert int(parsed["label"]) == 725
  assert parsed["file_name"].numpy().decode() == "ILSVRC2012_val_00000046"
  raw = tf.io.parse_single_example(example.SerializeToString(), features.FEATURE_SPEC)
  assert [int(raw[k]) for k in ("adversarial/height", "adversarial/width",
                                "clean/height", "clean/width")] == [6, 5, 4, 7]


def test_jpeg_clean_side_round_trip():
  # A smooth gradient survives JPEG with small error; noise would not.
  ramp = np.linspace(0, 255, 16).astype(np.uint8)
  clean = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None],
                                       np.full((16, 16), 128, np.uint8)), -1)
  adversarial = _image(16, 16, 2)
  jpeg = tf.io.encode_jpeg(clean, quality=95).numpy()
  example = features.make_example(
      tf.io.encode_png(adversarial).numpy(), (16, 16), jpeg, (16, 16), label=3,
      file_name="sub/dir/é.JPEG")
  parsed = _round_trip(example)
  assert parsed["clean"].shape == (16, 16, 3)
  # Exactly what the accurate-DCT JPEG decoder (= PIL) gives, and close to the original (lossy, not equal).
  np.testing.assert_allclose(
      parsed["clean"], tf.io.decode_jpeg(jpeg, dct_method="INTEGER_ACCURATE") / 255, atol=1e-6)
  error = np.abs(parsed["clean"].numpy() - clean / 255.0)
  assert 0 < error.mean() < 0.03
  np.testing.assert_allclose(parsed["adversarial"], adversarial / 255.0, atol=1e-6)
  assert parsed["file_name"].numpy().decode("utf-8") == "sub/dir/é.JPEG"


def test_missing_label_defaults_to_unknown():
  png = tf.io.encode_png(_image(2, 2, 3)).numpy()
  example = features.make_example(png, (2, 2), png, (2, 2), label=5, file_name="x")
  del example.features.feature["label"]
  assert int(_round_trip(example)["label"]) == features.UNKNOWN_LABEL == -1
  unknown = features.make_example(png, (2, 2), png, (2, 2),
                                  label=features.UNKNOWN_LABEL, file_name="x")
  assert int(_round_trip(unknown)["label"]) == -1


def test_missing_required_feature_fails():
  png = tf.io.encode_png(_image(2, 2, 4)).numpy()
  example = features.make_example(png, (2, 2), png, (2, 2), label=0, file_name="x")
  del example.features.feature["clean/encoded"]
  with pytest.raises(tf.errors.InvalidArgumentError):
    _round_trip(example)
