"""Transfer-set generation (tfrecords_builder.transfer_set) with a tiny trained surrogate."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading

import keras
import numpy as np
from PIL import Image
import pytest

from cdgan_tf.attacks import stats
from cdgan_tf import classifiers
from cdgan_tf.attacks import draws
from cdgan_tf.attacks import transfer_files
from cdgan_tf.attacks import transfer_set
from cdgan_tf.data import folders
from cdgan_tf.data import image_files
from tests.conftest import REPO_ROOT
from tfrecords_builder import builder

REPO = REPO_ROOT
CLASSES = ("blue", "green", "red")  # Sorted class folders: label 0 = blue = channel 2.
CHANNEL = {0: 2, 1: 1, 2: 0}
SIZE = 16
EPS_255 = 16


def _images(rng, labels, height=SIZE, width=SIZE):
  """float [N, H, W, 3]: noise in [0.2, 0.6] plus a small lift of the label's channel."""
  images = rng.uniform(0.2, 0.6, (len(labels), height, width, 3))
  for i, label in enumerate(labels):
    images[i, ..., CHANNEL[label]] += rng.uniform(0.08, 0.2)
  return images


def _save(path, pixels):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)
  return path


def _u8(images):
  return np.round(np.asarray(images) * 255).astype(np.uint8)


def _files(root):
  """{relative path: bytes} of the PNGs under root."""
  root = pathlib.Path(root)
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _rgb(path):
  return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
  """A conv net trained to tell the dominant colour, saved as .keras and loaded back."""
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 600)
  images = _images(rng, labels).astype(np.float32)
  model = keras.Sequential([
      keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
  model.compile(keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(images, labels, batch_size=64, epochs=25, verbose=0)
  path = tmp_path_factory.mktemp("model") / "colour.keras"
  model.save(path)
  return str(path), classifiers.load_classifier(str(path))


@pytest.fixture(scope="module")
def class_set(tmp_path_factory):
  """12 images of 16x16 in 3 class folders plus one 20x24 image."""
  root = tmp_path_factory.mktemp("clean")
  rng = np.random.default_rng(1)
  for label, name in enumerate(CLASSES):
    for i, image in enumerate(_images(rng, [label] * 4)):
      _save(root / name / f"{i:04d}.png", _u8(image))
  _save(root / "red" / "wide.png", _u8(_images(rng, [2], 20, 24)[0]))
  return root


def _run(clean, out, surrogate, **kwargs):
  settings = dict(attack="mifgsm", eps=f"{EPS_255}/255", steps=5, diversity_prob=0.5,
                  batch_size=4, seed=0, log_every=4)
  settings.update(kwargs)
  return transfer_set.generate(clean, out, [surrogate], **settings)


@pytest.fixture(scope="module")
def first_run(class_set, surrogate, tmp_path_factory):
  out = tmp_path_factory.mktemp("first") / "adv"
  return out, _run(class_set, out, surrogate[1])


def test_plan_subset_and_seeds():
  items = [("b", "p", 0, (16, 16)), ("a", "p", 0, (16, 16)), ("c", "p", 0, (8, 8)),
           ("d", "p", 0, (16, 16))]
  plan = transfer_set.plan_batches(items, 2)
  assert [[i[0] for i in batch] for batch in plan] == [["c"], ["a", "b"], ["d"]]
  keys = [f"cls{i % 3}/{i:04d}" for i in range(30)]
  subset = folders.select_subset(keys, 9)
  assert subset == sorted(subset) and len(set(subset)) == 9
  assert len({k.split("/")[0] for k in subset}) > 1  # Not just the first class.
  assert folders.select_subset(keys, 0) == sorted(keys)
  assert draws.batch_seed(0, "a") == draws.batch_seed(0, "a")
  assert draws.batch_seed(0, "a") != draws.batch_seed(1, "a")
  assert transfer_files.output_path("out", "cat/0001").as_posix() == "out/cat/0001.png"
  assert transfer_files.output_path("out", "img.v2").as_posix() == "out/img.v2.png"


def test_output_pairs_one_to_one_through_the_builder(first_run, class_set, tmp_path):
  out, manifest = first_run
  clean_files = {p.relative_to(class_set).with_suffix(".png").as_posix()
                 for p in class_set.rglob("*.png")}
  assert set(_files(out)) == clean_files
  assert manifest["counts"]["images"] == manifest["counts"]["attacked"] == 13
  assert manifest["counts"]["failed"] == 0 and manifest["failed"] == []
  records = builder.build(out, class_set, tmp_path / "records", val_fraction=0.3)
  assert sum(records["counts"].values()) == 13 and records["counts"]["val"] > 0
  assert records["inputs"]["pairs_found"] == 13
  # Only this tool's bookkeeping files are left out, never an image.
  assert {pathlib.Path(s["path"]).name for s in records["skipped"]} == {
      transfer_files.MANIFEST, transfer_files.SIDECAR}
  assert {s["kind"] for s in records["skipped"]} == {folders.NOT_AN_IMAGE}


def test_bound_statistics_and_accuracy(first_run, class_set, surrogate):
  out, manifest = first_run
  assert manifest["attack"]["eps_text"] == "16/255"
  assert manifest["attack"]["eps"] == pytest.approx(16 / 255)
  assert manifest["attack"]["step_size_effective"] == pytest.approx(16 / 255 / 5)
  rmsd, linf, correct_before, correct_after = [], [], [], []
  for key, path, label in folders.list_labelled_images(class_set)[0]:
    clean, adv = _rgb(path), _rgb(transfer_files.output_path(out, key))
    assert adv.shape == clean.shape
    measured = stats.perturbation_stats(clean / 255.0, adv / 255.0)
    rmsd.append(measured["rmsd_255"])
    linf.append(measured["linf_255"])
    for image, correct in ((clean, correct_before), (adv, correct_after)):
      prediction = surrogate[1].predict(image[None].astype(np.float32) / 255.0)
      correct.append(int(prediction[0]) == label)
  assert max(linf) <= EPS_255 + 0.5
  assert manifest["perturbation"]["linf_255_max"] == pytest.approx(max(linf))
  assert manifest["perturbation"]["rmsd_255_mean"] == pytest.approx(np.mean(rmsd))
  assert 4 < np.mean(rmsd) <= EPS_255
  top1 = manifest["surrogate_top1"]
  assert top1["before"] == pytest.approx(np.mean(correct_before))
  assert top1["after"] == pytest.approx(np.mean(correct_after))
  assert top1["before"] >= 0.75 and top1["after"] < top1["before"]


def test_resume_redoes_only_missing_files(first_run, class_set, surrogate, tmp_path):
  original, first = first_run
  out = tmp_path / "adv"
  shutil.copytree(original, out)
  victim = out / "green" / "0002.png"
  kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*.png") if p != victim}
  expected = victim.read_bytes()
  victim.unlink()
  stale = out / "red" / ".0001.png.tmp-999"
  stale.write_bytes(b"half a png")
  manifest = _run(class_set, out, surrogate[1])
  assert manifest["counts"]["attacked"] == 1
  assert manifest["counts"]["skipped_done"] == 12
  assert manifest["counts"]["recomputed_batch_mates"] == 3  # The rest of its batch.
  assert victim.read_bytes() == expected  # Same batch, same seed, same perturbation.
  assert all((p.stat().st_mtime_ns, p.read_bytes()) == v for p, v in kept.items())
  assert not stale.exists()
  assert manifest["counts"]["images"] == 13
  assert manifest["surrogate_top1"] == first["surrogate_top1"]
  assert manifest["perturbation"] == first["perturbation"]
  assert [r["attacked"] for r in manifest["runs"]] == [13, 1]

  again = _run(class_set, out, surrogate[1])
  assert again["counts"]["attacked"] == 0 and again["counts"]["skipped_done"] == 13
  with pytest.raises(ValueError, match="other settings.*eps"):
    _run(class_set, out, surrogate[1], eps="8/255")
  with pytest.raises(FileExistsError, match="not a transfer set"):
    _run(class_set, class_set.parent, surrogate[1])


def test_fresh_runs_are_byte_identical_and_seeded(first_run, class_set, surrogate, tmp_path):
  out, _ = first_run
  _run(class_set, tmp_path / "same", surrogate[1])
  assert _files(tmp_path / "same") == _files(out)
  _run(class_set, tmp_path / "other", surrogate[1], seed=1)
  other, reference = _files(tmp_path / "other"), _files(out)
  assert any(other[k] != reference[k] for k in reference)


def test_ensemble_reports_each_member(class_set, surrogate, tmp_path):
  manifest = transfer_set.generate(class_set, tmp_path / "adv", [surrogate[1], surrogate[0]],
                                   attack="fgsm", eps="8/255", max_images=6)
  assert [s["name"] for s in manifest["surrogates"]] == ["colour", "colour"]
  members = manifest["surrogate_top1"]["members"]
  assert len(members) == 2 and members[0] == members[1]  # The same model twice.
  assert members[0]["before"] == manifest["surrogate_top1"]["before"]
  assert manifest["counts"]["images"] == 6


def test_forward_only_surrogate_is_refused(class_set, tmp_path):
  fake = classifiers.Classifier(lambda x: x[:, 0, 0, :], name="fake_tflite",
                                input_size=(SIZE, SIZE), value_range="0_1", num_outputs=3,
                                differentiable=False, source="model.tflite")
  with pytest.raises(ValueError, match="fake_tflite.*forward-only"):
    transfer_set.generate(class_set, tmp_path / "adv", [fake])
  assert not (tmp_path / "adv").exists()


def test_flat_layout_with_labels_damagenet_crop_and_bad_file(surrogate, tmp_path):
  clean = tmp_path / "val"
  clean.mkdir()
  rng = np.random.default_rng(2)
  lines = []
  for i, (height, width) in enumerate([(30, 40), (44, 30), (36, 36)]):
    stem = f"ILSVRC2012_val_{i + 1:08d}"
    Image.fromarray(_u8(_images(rng, [i], height, width)[0])).save(
        clean / f"{stem}.JPEG", quality=95)
    lines.append(f"{stem}.JPEG {i}")
  (clean / "ILSVRC2012_val_00000009.JPEG").write_bytes(b"not a jpeg")
  lines.append("ILSVRC2012_val_00000009.JPEG 1")
  (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
  out = tmp_path / "adv"
  manifest = transfer_set.generate(clean, out, [surrogate[1]], labels_path=tmp_path / "val.txt",
                                   attack="fgsm", eps="8/255", crop="damagenet")
  assert sorted(_files(out)) == [f"ILSVRC2012_val_{i:08d}.png" for i in (1, 2, 3)]
  assert manifest["counts"]["attacked"] == 3 and manifest["counts"]["failed"] == 1
  assert manifest["failed"][0]["key"] == "ILSVRC2012_val_00000009"
  assert "cannot" in manifest["failed"][0]["reason"]
  assert manifest["attack"]["steps"] == 1
  for i in (1, 2, 3):
    stem = f"ILSVRC2012_val_{i:08d}"
    adv = _rgb(out / f"{stem}.png")
    prepared = image_files.prepare_clean(_rgb(clean / f"{stem}.JPEG"), "damagenet")
    assert adv.shape == (224, 224, 3)
    assert np.abs(adv.astype(int) - prepared).max() <= 8
  records = builder.build(out, clean, tmp_path / "records", labels_path=tmp_path / "val.txt",
                          crop="damagenet", val_fraction=0.0)
  assert records["counts"]["train"] == 3 and records["warnings"] == []
  assert {pathlib.Path(s["path"]).name for s in records["skipped"]} == {
      transfer_files.MANIFEST, transfer_files.SIDECAR, "ILSVRC2012_val_00000009.JPEG"}


def test_command_line_and_in_process_resume(class_set, surrogate, tmp_path):
  out = tmp_path / "adv"
  flags = [f"--clean_dir={class_set}", f"--surrogate={surrogate[0]}", "--eps=8/255",
           "--steps=2", "--max_images=5", "--batch_size=2", f"--output_dir={out}",
           "--log_every=2"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}

  def run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)

  done = run("tfrecords_builder.transfer_set", "--algorithm=pgd", *flags)
  assert done.returncode == 0, done.stderr
  assert "deprecated" not in done.stderr
  assert "images/s" in done.stderr and "surrogate top-1" in done.stderr
  manifest = json.loads((out / transfer_files.MANIFEST).read_text())
  assert manifest["counts"]["images"] == manifest["counts"]["attacked"] == 5
  assert manifest["attack"]["eps_text"] == "8/255" and manifest["attack"]["name"] == "pgd"
  assert "--max_images=5" in manifest["command"]["argv"]
  assert manifest["perturbation"]["linf_255_max"] <= 8.5
  # The same settings in-process (the surrogate given by the same path) resume it.
  again = transfer_set.generate(class_set, out, [surrogate[0]], attack="pgd", eps="8/255",
                                steps=2, max_images=5, batch_size=2)
  assert again["counts"]["attacked"] == 0 and again["counts"]["skipped_done"] == 5
  # The old spellings still work (one line each says so) and resume the same folder.
  old = run("tfrecords_builder.attack", "--attack=pgd", *flags)
  assert old.returncode == 0, old.stderr
  notes = [line for line in old.stderr.splitlines() if "deprecated" in line]
  assert notes == ["note: python -m tfrecords_builder.attack is deprecated, use python -m "
                   "tfrecords_builder.transfer_set",
                   "note: --attack is deprecated here, use --algorithm=pgd"], old.stderr
  counts = json.loads((out / transfer_files.MANIFEST).read_text())["counts"]
  assert (counts["attacked"], counts["skipped_done"]) == (0, 5)
  clash = run("tfrecords_builder.transfer_set", "--attack=pgd", "--algorithm=fgsm", *flags)
  assert clash.returncode == 2 and "disagree" in clash.stderr.strip().splitlines()[-1]
  with pytest.raises(ValueError, match="diversity_prob.*does not apply"):
    transfer_set.generate(class_set, tmp_path / "x", [surrogate[1]], attack="pgd",
                          diversity_prob=0.5)


def test_tflite_surrogate_attacks_through_its_float_rebuild(class_set, surrogate, tmp_path):
  """A .tflite surrogate: gradients from the float rebuild, top-1 from the interpreter."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model = keras.models.load_model(surrogate[0])
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  tflite_path = tmp_path / "colour.tflite"
  tflite_path.write_bytes(converter.convert())
  manifest = _run(class_set, tmp_path / "adv", str(tflite_path))
  assert manifest["surrogates"][0]["gradients"] == "float rebuild of the TFLite graph"
  assert manifest["perturbation"]["linf_255_max"] <= EPS_255
  top1 = manifest["surrogate_top1"]
  assert top1["before"] > 0.8 and top1["after"] < top1["before"] - 0.4, top1
  # The same attack on the Keras original succeeds as often: the rebuild's gradient is
  # the original model's.
  keras_manifest = _run(class_set, tmp_path / "adv_keras", surrogate[0])
  assert keras_manifest["surrogate_top1"]["after"] == pytest.approx(top1["after"], abs=0.1)


def test_rebuild_path_skips_the_interpreter_in_the_steps(class_set, surrogate, tmp_path,
                                                        monkeypatch):
  """attack_path="rebuild" runs the interpreter only for the top-1 before and after
  (2 calls a batch); "interpreter" also runs it in each of the 5 steps. On a float
  TFLite model both give the same gradient, hence the same PNGs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cdgan_tf.classifiers import tflite_runner  # pylint: disable=import-outside-toplevel
  model = keras.models.load_model(surrogate[0])
  tflite_path = tmp_path / "colour.tflite"
  tflite_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
  calls = []
  original = tflite_runner.TFLiteRunner.__call__
  monkeypatch.setattr(tflite_runner.TFLiteRunner, "__call__",
                      lambda self, x: calls.append(len(x)) or original(self, x))
  runs = {}
  for path in ("interpreter", "rebuild"):
    calls.clear()
    manifest = _run(class_set, tmp_path / path, str(tflite_path), max_images=8,
                    diversity_prob=0.0, attack_path=path)
    assert manifest["attack_path"] == path
    runs[path] = (list(calls), _files(tmp_path / path))
  # The 8 images fall into batches of 4, 3 (16x16) and 1 (20x24).
  assert runs["rebuild"][0] == [4, 4, 3, 3, 1, 1], runs["rebuild"][0]
  assert runs["interpreter"][0] == [n for n in (4, 3, 1) for _ in range(5 + 2)], (
      runs["interpreter"][0])
  assert runs["rebuild"][1] == runs["interpreter"][1]
  # One callable per member, run after run (the attack's loops are cached by identity).
  member = transfer_set.load_surrogates([str(tflite_path)])[0]
  assert (transfer_set.attack_functions([member])[0] is
          transfer_set.attack_functions([member])[0])
  with pytest.raises(ValueError, match="attack_path"):
    _run(class_set, tmp_path / "x", str(tflite_path), attack_path="fast")


def test_changed_subset_or_batch_size_is_refused(first_run, class_set, surrogate, tmp_path):
  """Another --max_images (or --batch_size) changes which images share a batch, and so
  their bytes: a folder made with other values is refused instead of mixed."""
  out = tmp_path / "adv"
  _run(class_set, out, surrogate[1], max_images=6)
  with pytest.raises(ValueError, match="max_images: 6 there, 9 now"):
    _run(class_set, out, surrogate[1], max_images=9)
  with pytest.raises(ValueError, match="batch_size: 4 there, 2 now"):
    _run(class_set, out, surrogate[1], max_images=6, batch_size=2)
  again = _run(class_set, out, surrogate[1], max_images=6)  # The same settings resume.
  assert again["counts"]["attacked"] == 0 and again["counts"]["images"] == 6


def test_overlap_on_threads_writes_the_same_bytes_as_in_turn(first_run, class_set, surrogate,
                                                             tmp_path, monkeypatch):
  out, _ = first_run  # Made with the default overlap (read ahead, written behind).
  threads = {}
  for name, call in (("write_png", transfer_files.write_png),
                     ("load_rgb", image_files.load_rgb)):
    def recorded(*args, _name=name, _call=call):
      threads.setdefault(_name, set()).add(threading.get_ident())
      return _call(*args)
    monkeypatch.setattr(transfer_files if name == "write_png" else image_files, name,
                        recorded)
  _run(class_set, tmp_path / "in_turn", surrogate[1], overlap_depth=0)
  assert threads == {"write_png": {threading.get_ident()},
                     "load_rgb": {threading.get_ident()}}
  threads.clear()
  manifest = _run(class_set, tmp_path / "overlapped", surrogate[1], overlap_depth=3)
  assert threading.get_ident() not in threads["write_png"] | threads["load_rgb"]
  assert manifest["overlap_depth"] == 3 and manifest["counts"]["attacked"] == 13
  reference = _files(out)
  assert _files(tmp_path / "in_turn") == reference == _files(tmp_path / "overlapped")
  sidecars = [(d / transfer_files.SIDECAR).read_text() for d in
              (out, tmp_path / "in_turn", tmp_path / "overlapped")]
  assert sidecars[0] == sidecars[1] == sidecars[2]


def test_an_images_bytes_do_not_depend_on_its_batch(first_run, class_set, surrogate,
                                                    tmp_path):
  """Per-image seeds (the default): another batch size or subset attacks each image as
  before (MI-FGSM with input diversity draws its transforms per image); per-batch seeds
  (transfer sets made before) do not."""
  out, _ = first_run
  reference = {k: _rgb(out / k) for k in _files(out)}
  _run(class_set, tmp_path / "b3", surrogate[1], batch_size=3)
  _run(class_set, tmp_path / "sub", surrogate[1], max_images=6, batch_size=5)
  for folder in ("b3", "sub"):
    made = _files(tmp_path / folder)
    assert made and set(made) <= set(reference)
    for key in made:
      np.testing.assert_array_equal(_rgb(tmp_path / folder / key), reference[key])
  _run(class_set, tmp_path / "batch4", surrogate[1], seeding="batch")
  _run(class_set, tmp_path / "batch3", surrogate[1], seeding="batch", batch_size=3)
  four, three = _files(tmp_path / "batch4"), _files(tmp_path / "batch3")
  assert any(four[k] != three[k] for k in four)


def test_a_set_made_with_per_batch_seeds_is_not_resumed_per_image(class_set, surrogate,
                                                                  tmp_path):
  """A sidecar without a seeding (made before per-image seeds) is a per-batch set."""
  out = tmp_path / "adv"
  _run(class_set, out, surrogate[1], max_images=4, seeding="batch")
  sidecar = out / transfer_files.SIDECAR
  lines = sidecar.read_text().splitlines()
  header = json.loads(lines[0])
  del header["settings"]["seeding"]
  sidecar.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
  again = _run(class_set, out, surrogate[1], max_images=4, seeding="batch")
  assert again["counts"]["attacked"] == 0
  with pytest.raises(ValueError, match="seeding: 'batch' there, 'image' now"):
    _run(class_set, out, surrogate[1], max_images=4)
