"""The attack-mix pair generator (python -m tfrecords_builder.mix) on tiny images."""

import json
import pathlib
import shutil

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from cdgan_tf import classifiers
from cdgan_tf.attacks import gradient
from cdgan_tf.attacks import mix_set
from cdgan_tf.attacks import mixes
from cdgan_tf.attacks import transfer_files
from cdgan_tf.data import features
from tfrecords_builder import builder
from tfrecords_builder import mix_records

SIZE = 16


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  """An untrained conv net (3 classes) with a named feature layer, saved as .keras."""
  keras.utils.set_random_seed(0)
  inputs = keras.Input((SIZE, SIZE, 3))
  hidden = keras.layers.Conv2D(6, 3, activation="relu", name="features")(inputs)
  outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(hidden))
  path = tmp_path_factory.mktemp("model") / "net.keras"
  keras.Model(inputs, outputs).save(path)
  return str(path)


def _tiny_mix(model, versions=3, eps=(2, 16)):
  net = ((model,),)
  attacks = (mixes.MixAttack("clean", "clean", 1.0),
             mixes.MixAttack("uniform", "uniform", 1.0, eps),
             mixes.MixAttack("gaussian", "gaussian", 1.0, eps),
             mixes.MixAttack("fgsm", "fgsm", 1.0, eps, net),
             mixes.MixAttack("pgd", "pgd", 1.0, eps, net, steps=3),
             mixes.MixAttack("mifgsm_di", "mifgsm", 1.0, eps, net, steps=3,
                             diversity_prob=0.5),
             mixes.MixAttack("feature", "feature", 1.0, eps, steps=3,
                             feature_network=model, feature_layer="features"))
  return mixes.AttackMix("tiny", "test", (mixes.ImageSource("train", "{shared}/clean"),),
                         attacks, versions_per_image=versions)


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
  """{shared}/clean: 2 class folders, 8 images of 16x16 and one of 12x20."""
  root = tmp_path_factory.mktemp("shared")
  rng = np.random.default_rng(0)
  for i in range(8):
    path = root / "clean" / ("a" if i % 2 else "b") / f"{i:02d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(20, 235, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
  Image.fromarray(rng.integers(20, 235, (12, 20, 3), dtype=np.uint8)).save(
      root / "clean" / "a" / "wide.png")
  return str(root)


def _rgb(path):
  return np.asarray(Image.open(path).convert("RGB")).astype(np.int32)


def _pngs(root):
  root = pathlib.Path(root)
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def generated(tmp_path_factory, model_path, shared_dir):
  out = tmp_path_factory.mktemp("mix") / "out"
  manifest = mix_set.generate(_tiny_mix(model_path), out, shared_dir=shared_dir,
                              batch_size=4, seed=0)
  return out, manifest


def test_every_version_respects_its_budget_and_kind(generated, model_path):
  out, manifest = generated
  assert manifest["complete"] and manifest["counts"]["versions"] == 9 * 3
  records = mix_set.present_records(out)
  assert {r["attack"] for r in records} == {a.name for a in _tiny_mix(model_path).attacks}
  surrogate = classifiers.load_classifier(model_path)
  for r in records:
    clean, adv = _rgb(r["clean_path"]), _rgb(mix_set.adversarial_path(out, r["key"]))
    linf = np.abs(adv - clean).max()
    assert linf <= r["eps_255"], r  # Budget respected after the uint8 PNG.
    assert r["eps"] == pytest.approx(r["eps_255"] / 255)
    if r["attack"] == "clean":
      assert linf == 0
    else:
      assert linf >= 1 and 2 <= r["eps_255"] <= 16
    if r["kind"] == "fgsm":  # One signed step: every unclipped pixel moves by eps.
      moved = np.abs(adv - clean)
      assert np.mean(moved >= r["eps_255"] - 1) > 0.9, r
    if r["kind"] in ("fgsm", "pgd", "mifgsm"):  # Ascends the true label's loss.
      x = np.stack([clean, adv]).astype(np.float32) / 255
      ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=[r["label"]] * 2, logits=surrogate(tf.constant(x))).numpy()
      assert ce[1] > ce[0], r
  per_attack = manifest["per_attack"]
  assert sum(v["versions"] for v in per_attack.values()) == 27
  assert per_attack["clean"]["linf_255_max"] in (0.0, None)


def test_records_carry_the_attack_keys_and_keep_an_image_in_one_split(generated):
  out, _ = generated
  manifest = mix_records.pack(out, val_fraction=0.3, seed=0)
  sidecar = {r["key"]: r for r in mix_set.present_records(out)}
  seen, splits = {}, {}
  for split in builder.SPLITS:
    for shard in manifest["shards"][split]:
      for raw in tf.data.TFRecordDataset(str(out / "records" / shard["file"])):
        ex = features.parse_example(raw)
        key = ex["file_name"].numpy().decode()
        seen[key] = (ex["attack/name"].numpy().decode(), float(ex["attack/eps"]))
        splits.setdefault(sidecar[key]["image_key"], set()).add(split)
        np.testing.assert_array_equal(  # The adversarial side is the PNG, bit for bit.
            np.round(ex["adversarial"].numpy() * 255),
            _rgb(mix_set.adversarial_path(out, key)))
  assert set(seen) == set(sidecar)
  for key, (name, eps) in seen.items():
    assert name == sidecar[key]["attack"]
    assert eps == pytest.approx(sidecar[key]["eps_255"] / 255, abs=1e-7)
  assert all(len(s) == 1 for s in splits.values())  # All versions of an image together.
  assert {s for v in splits.values() for s in v} == {"train", "val"}
  assert sum(sum(v.values()) for v in manifest["per_attack"].values()) == len(seen)
  on_disk = json.loads((out / "records" / "manifest.json").read_text())
  assert on_disk["counts"]["train"] + on_disk["counts"]["val"] == 27


def test_old_records_without_attack_keys_read_as_unknown():
  example = features.make_example(b"x", (1, 1), b"y", (1, 1), 3, "k")
  parsed = tf.io.parse_single_example(example.SerializeToString(), features.FEATURE_SPEC)
  assert parsed["attack/name"].numpy() == b"" and float(parsed["attack/eps"]) == -1.0


def test_a_resumed_run_writes_the_same_bytes(model_path, shared_dir, tmp_path):
  # One budget: versions share (attack, eps) groups, so batches hold several versions
  # and a resumed batch mixes done and missing ones.
  mix = _tiny_mix(model_path, eps=(8, 8))
  out = tmp_path / "full"
  mix_set.generate(mix, out, shared_dir=shared_dir, batch_size=4, seed=0)
  batches = mix_set.plan(mix, [(k, p, l, "train") for k, p, l in mix_set.list_source(
      mix.sources[0], shared_dir, "")[0]], 0, 4)
  assert max(len(b) for b in batches) == 4
  resumed = tmp_path / "resumed"
  shutil.copytree(out / "adv", resumed / "adv")
  shutil.copy(out / transfer_files.SIDECAR, resumed / transfer_files.SIDECAR)
  pngs = sorted((resumed / "adv").rglob("*.png"))
  for path in pngs[::3]:  # "Killed" before these were written.
    path.unlink()
  lines = (resumed / transfer_files.SIDECAR).read_text().splitlines()
  (resumed / transfer_files.SIDECAR).write_text("\n".join(lines[:-4]) + "\n{\"key\": \"tor")
  manifest = mix_set.generate(mix, resumed, shared_dir=shared_dir, batch_size=4, seed=0)
  assert manifest["complete"] and manifest["runs"][-1]["attacked"] >= len(pngs[::3])
  assert manifest["runs"][-1]["recomputed_batch_mates"] > 0
  assert _pngs(resumed / "adv") == _pngs(out / "adv")


def test_other_settings_are_refused(generated, model_path, shared_dir):
  out, _ = generated
  with pytest.raises(ValueError, match="other settings"):
    mix_set.generate(_tiny_mix(model_path, versions=2), out, shared_dir=shared_dir,
                     batch_size=4)


def test_pgd_batch_of_one_after_a_relaxed_classifier_trace(model_path):
  """Regression: a [None, ...] gradient broke PGD's loop invariant (gradient.py)."""
  c = classifiers.load_classifier(model_path)
  x = np.full((5, SIZE, SIZE, 3), 0.5, np.float32)
  for n in (3, 5, 2):  # Different batch sizes relax the classifier's trace.
    gradient.fgsm(c, x[:n], np.zeros([n], np.int64), 4 / 255)
  out = gradient.pgd(c, x[:1], np.zeros([1], np.int64), 4 / 255, steps=2)
  assert out.shape == (1, SIZE, SIZE, 3)


def test_overlap_writes_the_same_bytes_as_in_turn(generated, model_path, shared_dir,
                                                  tmp_path):
  out, _ = generated  # Made with the default overlap (read ahead, written behind).
  # attack_path="rebuild" only changes TFLite surrogates (this one is Keras).
  manifest = mix_set.generate(_tiny_mix(model_path), tmp_path / "in_turn",
                              shared_dir=shared_dir, batch_size=4, seed=0, overlap_depth=0,
                              attack_path="rebuild")
  assert manifest["complete"] and manifest["runs"][-1]["attack_path"] == "rebuild"
  with pytest.raises(ValueError, match="attack_path"):
    mix_set.generate(_tiny_mix(model_path), tmp_path / "x", shared_dir=shared_dir,
                     attack_path="fast")
  assert _pngs(tmp_path / "in_turn" / "adv") == _pngs(out / "adv")
  assert ((tmp_path / "in_turn" / transfer_files.SIDECAR).read_text() ==
          (out / transfer_files.SIDECAR).read_text())


def test_sigterm_finishes_the_batch_writes_the_manifest_and_resumes(
    generated, model_path, shared_dir, tmp_path, monkeypatch):
  import signal
  from cdgan_tf.common import interrupts
  out_full, _ = generated
  requests = []

  class _Requests(interrupts.StopRequests):
    """No real handler: the test "delivers" SIGTERM while the second batch runs."""

    def __enter__(self):
      requests.append(self)
      return self

    def __exit__(self, *exc):
      return None

  attack_loaded = mix_set._attack_loaded
  calls = []

  def attack_then_signal(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      requests[-1].signum = signal.SIGTERM
    return attack_loaded(*args, **kwargs)

  monkeypatch.setattr(interrupts, "StopRequests", _Requests)
  monkeypatch.setattr(mix_set, "_attack_loaded", attack_then_signal)
  out = tmp_path / "stopped"
  with pytest.raises(interrupts.Interrupted, match="rerun the same command") as stopped:
    mix_set.generate(_tiny_mix(model_path), out, shared_dir=shared_dir, batch_size=4,
                     seed=0)
  assert stopped.value.exit_code == 143 and len(calls) == 2  # The second batch finished.
  manifest = json.loads((out / mix_set.MANIFEST).read_text())
  assert manifest["complete"] is False
  assert manifest["runs"][-1]["stopped_by"].startswith("SIGTERM after ")
  written = len(_pngs(out / "adv"))
  assert written == manifest["counts"]["versions"] == manifest["runs"][-1]["attacked"] > 0
  assert not (out / ".lock").exists()
  monkeypatch.setattr(mix_set, "_attack_loaded", attack_loaded)
  resumed = mix_set.generate(_tiny_mix(model_path), out, shared_dir=shared_dir,
                             batch_size=4, seed=0)
  assert resumed["complete"] and resumed["runs"][-1]["skipped_done"] == written
  assert _pngs(out / "adv") == _pngs(out_full / "adv")
