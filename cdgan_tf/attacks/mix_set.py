"""Attack-mix training sets: several adversarial versions of every clean image.

`generate()` is the library part of `python -m tfrecords_builder.mix --mix=NAME`. For a
declared `mixes.AttackMix` it lists the clean images of the mix's sources (the test
split left out by `folders.select_subset`, as `tfrecords_builder --holdout_subset`
does), gives each image `versions_per_image` versions, draws each version's attack,
budget and surrogate choice (`mixes.draw`: a stable hash of seed, key and version),
runs the attacks at the image's full stored size and writes `round(255 * x_adv)` as
8-bit RGB PNGs:

  <output_dir>/adv/<source>/<key>.v<version>.png
  <output_dir>/.attack_stats.jsonl   the sidecar (settings header, one record per PNG)
  <output_dir>/mix_manifest.json     the mix, counts / budgets / RMSD per attack, runs

Attack kinds: "clean" (the image itself, the no-op of HGD's mix), "uniform" /
"gaussian" (`noise.noise`), "fgsm" / "pgd" / "mifgsm" (`gradient`, untargeted on the
true label, through `AttackSettings.run`), "feature" (`feature_distortion`, label-free).

Batches: the versions are grouped by (attack, budget, surrogate choice, image size),
sorted by key, and cut into `batch_size` chunks; a batch's seed is `draws.batch_seed(seed,
first key)`. The plan depends only on the mix, the images and batch_size, so a resumed
run gives every version the same bytes as an uninterrupted one. Resuming follows `transfer_set`: a version is done when its PNG
exists and the sidecar has its record; a rerun with other settings is refused.
"""

from __future__ import annotations

import collections
import os
import pathlib
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from cdgan_tf.attacks import draws
from cdgan_tf.attacks import feature_distortion
from cdgan_tf.attacks import mixes
from cdgan_tf.attacks import noise
from cdgan_tf.attacks import overlap
from cdgan_tf.attacks import settings as settings_lib
from cdgan_tf.attacks import stats
from cdgan_tf.attacks import transfer_files as tfiles
from cdgan_tf.attacks import transfer_set
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.common import interrupts
from cdgan_tf.common import locks
from cdgan_tf.data import folders
from cdgan_tf.data import image_files

MANIFEST = "mix_manifest.json"
ADV_DIR = "adv"
Item = collections.namedtuple(
    "Item", "key image_key source path label size attack eps_255 choice version")


def list_source(source: mixes.ImageSource, shared_dir: str, weights_dir: str):
  """[(image key "<source>/<key>", path, label)] of one source, test split left out.

  Returns:
    (images, number left out as test split, inputs skipped while listing).
  """
  clean_dir = mixes.resolve_spec(source.clean_dir, shared_dir, weights_dir)
  labels = (None if source.labels is None
            else mixes.resolve_spec(source.labels, shared_dir, weights_dir))
  listed, skipped = folders.list_labelled_images(clean_dir, labels)
  test = set(folders.select_subset([k for k, _, _ in listed], source.exclude_test_subset)
             ) if source.exclude_test_subset else set()
  remaining = {k: (p, l) for k, p, l in listed if k not in test}
  kept = folders.select_subset(list(remaining), source.max_images)
  return ([(f"{source.name}/{k}", remaining[k][0], remaining[k][1]) for k in kept],
          len(test), skipped)


def plan(mix: mixes.AttackMix, images, seed: int, batch_size: int,
         size_of=None) -> List[List[Item]]:
  """Versions of every image, grouped by (attack, eps, choice, size) and batched.

  Args:
    mix: The attack mix.
    images: [(image key, path, label, source name)].
    seed: Seed of `mixes.draw` and of the batches.
    batch_size: Versions per batch.
    size_of: path -> (height, width); default: read from the image header.
  """
  size_of = size_of or image_files.header_size
  groups: Dict[tuple, List[Item]] = {}
  for image_key, path, label, source in sorted(images):
    size = tuple(size_of(path))
    for version in range(mix.versions_per_image):
      attack, eps_255, choice = mixes.draw(mix, image_key, version, seed)
      item = Item(f"{image_key}.v{version}", image_key, source, path, int(label), size,
                  attack.name, eps_255, choice, version)
      groups.setdefault((attack.name, eps_255, choice, size), []).append(item)
  batches = []
  for group_key in sorted(groups):
    group = sorted(groups[group_key])
    batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
  return batches


class Models:
  """Loads each surrogate ensemble and feature network of a mix once, on first use.

  `attack_path` ("interpreter" or "rebuild", `transfer_set.ATTACK_PATHS`): what the
  gradient attacks' steps run for a TFLite surrogate (`attack_functions`)."""

  def __init__(self, shared_dir: str, weights_dir: str, attack_path: str = "interpreter"):
    self.shared_dir, self.weights_dir = shared_dir, weights_dir
    self.attack_path = attack_path
    self._cache: Dict[tuple, object] = {}

  def attack_functions(self, specs: Sequence[str]):
    """The callables the gradient steps follow (`transfer_set.attack_functions`)."""
    return transfer_set.attack_functions(self.surrogates(specs), self.attack_path)

  def surrogates(self, specs: Sequence[str]):
    key = ("surrogates",) + tuple(specs)
    if key not in self._cache:
      self._cache[key] = transfer_set.load_surrogates(
          [mixes.resolve_spec(s, self.shared_dir, self.weights_dir) for s in specs])
    return self._cache[key]

  def features(self, spec: str, layer: str):
    key = ("features", spec, layer)
    if key not in self._cache:
      from cdgan_tf.classifiers import features  # pylint: disable=g-import-not-at-top
      self._cache[key] = features.load_feature_extractor(
          mixes.resolve_spec(spec, self.shared_dir, self.weights_dir), layer)
    return self._cache[key]


def run_attack(attack: mixes.MixAttack, eps_255: int, choice: int, models: Models,
               clean: np.ndarray, labels: np.ndarray, seed) -> np.ndarray:
  """One mix attack on a batch.

  Args:
    attack: The mix member.
    eps_255: Budget in 1/255 steps.
    choice: Index into attack.surrogates (gradient kinds).
    models: Where the networks come from.
    clean: float32 [N, H, W, 3] in [0, 1].
    labels: int64 [N] true labels (only gradient kinds read them).
    seed: Seed of the attack's randomness: an int (one stream for the batch, as the
      mix generator uses), or int [N], one per image (`attacks.draws`).

  Returns:
    float32 [N, H, W, 3] in [0, 1] with max |x_adv - clean| <= eps_255 / 255.
  """
  eps = eps_255 / 255.0
  if attack.kind == "clean":
    return clean
  if attack.kind in noise.NOISES:
    return np.asarray(noise.noise(clean, eps, attack.kind, seed=seed))
  if attack.kind == "feature":
    fn = models.features(attack.feature_network, attack.feature_layer)
    return np.asarray(feature_distortion.feature_distortion(
        fn, clean, eps, steps=attack.steps, seed=seed))
  members = models.attack_functions(attack.surrogates[choice])
  if attack.kind == "fgsm":
    settings = settings_lib.AttackSettings.parse("fgsm", eps)
  elif attack.kind == "pgd":
    settings = settings_lib.AttackSettings.parse("pgd", eps, steps=attack.steps)
  else:
    settings = settings_lib.AttackSettings.parse(
        "mifgsm", eps, steps=attack.steps, decay=attack.decay,
        diversity_prob=attack.diversity_prob)
  return np.asarray(settings.run(members, clean, labels, seed=seed))


def _load_batch(batch: List[Item]):
  """Decodes a batch's images: ([(item, pixels uint8 [H, W, 3])], failures)."""
  loaded, failures = [], []
  for item in batch:
    try:
      image = image_files.load_rgb(item.path)
      if image.shape[:2] != item.size:
        raise image_files.ImageError(item.path, f"decoded size {image.shape[:2]} differs "
                                     f"from its header's {item.size}")
    except image_files.ImageError as e:
      failures.append({"key": item.key, "path": e.path, "reason": e.reason})
      continue
    loaded.append((item, image))
  return loaded, failures


def _attack_loaded(loaded, done_keys, mix: mixes.AttackMix, models: Models, seed: int):
  """Attacks one decoded batch (one attack, budget and size).

  Returns:
    ({key: adversarial uint8 [H, W, 3]} and the records of the versions not yet done.
  """
  first = loaded[0][0]
  attack = {a.name: a for a in mix.attacks}[first.attack]
  clean = np.stack([pixels for _, pixels in loaded]).astype(np.float32) / 255.0
  labels = np.array([item.label for item, _ in loaded], np.int64)
  adversarial = run_attack(attack, first.eps_255, first.choice, models, clean,
                           labels, draws.batch_seed(seed, first.key))
  adv_u8 = np.clip(np.round(adversarial * 255.0), 0, 255).astype(np.uint8)
  pngs, records = {}, []
  for i, (item, pixels) in enumerate(loaded):
    if item.key in done_keys:
      continue
    pngs[item.key] = adv_u8[i]
    perturbation = {k: round(v, 6) for k, v in
                    stats.perturbation_stats(pixels / 255.0, adv_u8[i] / 255.0).items()}
    records.append({"key": item.key, "image_key": item.image_key, "source": item.source,
                    "clean_path": item.path, "label": item.label, "size": list(item.size),
                    "version": item.version, "attack": item.attack,
                    "kind": attack.kind, "eps": item.eps_255 / 255.0,
                    "eps_255": item.eps_255, "surrogate_choice": item.choice,
                    **perturbation})
  return pngs, records


def _write_batch(records: List[dict], pngs, output_dir: pathlib.Path, sidecar) -> None:
  """Writes the PNGs ({key: uint8 [H, W, 3]}), then appends their records."""
  for key, pixels in pngs.items():
    tfiles.write_png(tfiles.output_path(output_dir / ADV_DIR, key), pixels)
  tfiles.append_records(sidecar, records)


def summarize(mix: mixes.AttackMix, records: Sequence[dict]) -> dict:
  """Counts, budgets and perturbation sizes per attack of the mix."""
  out = {}
  for attack in mix.attacks:
    mine = [r for r in records if r["attack"] == attack.name]
    out[attack.name] = {
        "kind": attack.kind, "share": round(mix.shares()[attack.name], 6),
        "versions": len(mine),
        "versions_by_eps_255": {str(e): n for e, n in sorted(collections.Counter(
            r["eps_255"] for r in mine).items())},
        "rmsd_255_mean": round(float(np.mean([r["rmsd_255"] for r in mine])), 4)
                         if mine else None,
        "linf_255_max": max((r["linf_255"] for r in mine), default=None)}
  return out


def generate(mix: mixes.AttackMix, output_dir, shared_dir: str = "../shared",
             weights_dir: Optional[str] = None, batch_size: int = 32, seed: int = 0,
             max_images: int = 0, log_every: int = 200,
             command: Optional[dict] = None, overlap_depth: int = 2,
             attack_path: str = "interpreter") -> dict:
  """Writes every version of every image of the mix (resumable); returns the manifest.

  Args:
    mix: The attack mix (`mixes.get_mix(name)`).
    output_dir: Created if needed; empty, or a previous run's folder (resumed).
    shared_dir: Where "{shared}" in the mix's specs points (`../shared`).
    weights_dir: Where "{weights}" points; default the repo's weights/.
    batch_size: Versions per attack batch (part of the deterministic plan).
    seed: Seed of the draws and the attacks' randomness.
    max_images: Keep only `folders.select_subset(all image keys, N)` (a smoke run);
      0: every image of the mix.
    log_every: Log progress (rate, ETA) every this many versions.
    command: Command-line arguments to record in the manifest.
    overlap_depth: Batches decoded ahead and written behind on threads while the
      attack runs (`overlap`); 0: all in turn. Not a setting: the bytes are the same.
    attack_path: "interpreter" (default: the bytes of earlier runs) or "rebuild" (about
      2x faster gradient steps through a TFLite surrogate's float rebuild alone; other
      bytes), as `transfer_set.generate`; recorded in each run of the manifest.

  Returns:
    The manifest (also output_dir/mix_manifest.json); its "complete" is True when every
    planned version has its PNG.

  On SIGTERM / SIGINT the batch under way is finished and written, the manifest
  records the versions present (its last run says `stopped_by`), the lock is released
  and `interrupts.Interrupted` is raised; rerunning resumes.

  Raises:
    interrupts.Interrupted: stopped by a signal after writing what was done.
    ValueError, FileExistsError, NotADirectoryError, FileNotFoundError: bad arguments,
      folders, or an output_dir made with other settings.
    LockError: another run writes output_dir.
  """
  if batch_size < 1 or max_images < 0 or overlap_depth < 0:
    raise errors.UsageError(f"batch_size={batch_size} must be >= 1, max_images={max_images} >= 0 "
                     f"and overlap_depth={overlap_depth} >= 0")
  weights_dir = weights_dir or mixes.default_weights_dir()
  output_dir = pathlib.Path(output_dir)
  settings = {"mix": mix.record(), "seed": int(seed), "batch_size": int(batch_size),
              "max_images": int(max_images)}
  images, sources, inputs_skipped = [], {}, []
  for source in mix.sources:
    listed, left_out, skipped = list_source(source, shared_dir, weights_dir)
    _, records = tfiles.check_output_dir(
        output_dir, mixes.resolve_spec(source.clean_dir, shared_dir, weights_dir), settings)
    images += [(k, p, l, source.name) for k, p, l in listed]
    sources[source.name] = {"images": len(listed), "test_split_left_out": left_out,
                            "inputs_skipped": len(skipped)}
    inputs_skipped += skipped
  if max_images:
    keep = set(folders.select_subset([i[0] for i in images], max_images))
    images = [i for i in images if i[0] in keep]
  if not images:
    raise errors.UsageError(f"mix {mix.name!r}: no clean image found in its sources")
  batches = plan(mix, images, seed, batch_size)
  total = sum(len(b) for b in batches)
  is_done = lambda key: key in records and tfiles.output_path(  # noqa: E731
      output_dir / ADV_DIR, key).exists()
  logging.info("mix %s: %d images x %d versions = %d in %d batches; %d already done in %s",
               mix.name, len(images), mix.versions_per_image, total, len(batches),
               sum(is_done(i.key) for b in batches for i in b), output_dir)
  checks.check_choice("attack_path", attack_path, transfer_set.ATTACK_PATHS)
  models = Models(shared_dir, weights_dir, attack_path)
  failed: List[dict] = []
  counts = {"attacked": 0, "skipped_done": 0, "recomputed_batch_mates": 0}
  with locks.FolderLock(str(output_dir), "the attack-mix generator"), \
      interrupts.StopRequests() as stop:
    tfiles.remove_stale_temporaries(output_dir)
    started, seen, next_log = time.perf_counter(), 0, log_every
    with tfiles.open_sidecar(output_dir / tfiles.SIDECAR,
                             settings if not (output_dir / tfiles.SIDECAR).exists()
                             else None) as sidecar:
      planned = ((batch, [is_done(item.key) for item in batch]) for batch in batches)
      load = lambda planned: None if all(planned[1]) else _load_batch(planned[0])  # noqa
      with overlap.Writer(overlap_depth) as writer:
        for (batch, done), loaded in overlap.read_ahead(planned, load, overlap_depth):
          seen += len(batch)
          counts["skipped_done"] += sum(done)
          if loaded is None:
            continue
          counts["recomputed_batch_mates"] += sum(done)
          loaded, failures = loaded
          failed += failures
          if loaded:
            pngs, written = _attack_loaded(
                loaded, {i.key for i, d in zip(batch, done) if d}, mix, models, seed)
            writer.submit(_write_batch, written, pngs, output_dir, sidecar)
            counts["attacked"] += len(written)
          if seen >= next_log or batch is batches[-1]:
            next_log = seen + log_every
            rate = counts["attacked"] / max(time.perf_counter() - started, 1e-9)
            eta = (total - seen) / max(rate, 1e-9)
            logging.info("%d/%d versions (%.0f%%): %d attacked now (%.2f versions/s), %d "
                         "already done, %d failed; last batch %s eps %d/255; ETA %s", seen,
                         total, 100.0 * seen / total, counts["attacked"], rate,
                         counts["skipped_done"], len(failed), batch[0].attack,
                         batch[0].eps_255, time.strftime("%H:%M:%S", time.gmtime(eta)))
          if stop.requested:
            counts["stopped_by"] = f"{stop.name} after {seen} of {total} versions"
            break
    seconds = time.perf_counter() - started
    manifest = _write_manifest(output_dir, mix, settings, batches, sources,
                               dict(counts, attack_path=attack_path), failed,
                               inputs_skipped, seconds, command)
    stop.raise_if_requested(
        f"wrote the {counts['attacked']} versions attacked now to {output_dir} "
        f"({counts.get('stopped_by', '')}); rerun the same command to resume")
  logging.info("mix %s: %d/%d versions present (%d attacked now in %.1f s, %.2f "
               "versions/s); complete: %s", mix.name, manifest["counts"]["versions"],
               total, counts["attacked"], seconds, manifest["runs"][-1]["versions_per_s"],
               manifest["complete"])
  return manifest


def _write_manifest(output_dir, mix, settings, batches, sources, counts, failed,
                    inputs_skipped, seconds, command) -> dict:
  from cdgan_tf.common import files  # pylint: disable=g-import-not-at-top
  _, records = tfiles.read_sidecar(output_dir / tfiles.SIDECAR)
  planned = {i.key for b in batches for i in b}
  present = [r for k, r in sorted(records.items()) if k in planned and
             tfiles.output_path(output_dir / ADV_DIR, k).exists()]
  previous = {}
  if (output_dir / MANIFEST).exists():
    previous = files.read_json(str(output_dir / MANIFEST))
  run = dict(counts, failed=len(failed), seconds=round(seconds, 3),
             versions_per_s=round(counts["attacked"] / max(seconds, 1e-9), 4),
             command=command)
  manifest = {
      "mix": mix.record(), "settings": {k: v for k, v in settings.items() if k != "mix"},
      "output_dir": str(output_dir), "adversarial_dir": str(output_dir / ADV_DIR),
      "complete": len(present) == len(planned),
      "counts": {"images": len({r["image_key"] for r in present}),
                 "versions": len(present), "planned_versions": len(planned),
                 "failed": len(failed), "inputs_skipped": len(inputs_skipped)},
      "sources": sources,
      "per_attack": summarize(mix, present),
      "failed": sorted(failed, key=lambda f: f["key"]),
      "runs": previous.get("runs", []) + [run],
  }
  manifest["wall_seconds_total"] = round(sum(r["seconds"] for r in manifest["runs"]), 3)
  files.write_json(str(output_dir / MANIFEST), manifest, indent=1)
  return manifest


def present_records(output_dir) -> List[dict]:
  """The sidecar records whose PNG exists, sorted by key (what packing reads)."""
  output_dir = pathlib.Path(output_dir)
  _, records = tfiles.read_sidecar(output_dir / tfiles.SIDECAR)
  return [r for k, r in sorted(records.items())
          if tfiles.output_path(output_dir / ADV_DIR, k).exists()]


def adversarial_path(output_dir, key: str) -> str:
  """Where the PNG of version `key` lies."""
  return os.fspath(tfiles.output_path(pathlib.Path(output_dir) / ADV_DIR, key))
