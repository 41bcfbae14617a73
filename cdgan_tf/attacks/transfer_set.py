"""DAmageNet-style transfer sets: attack surrogate classifiers, write adversarial PNGs.

`generate()` is the library part of `python -m tfrecords_builder.transfer_set`. It lists a
folder of clean images (`folders.list_labelled_images`: a flat folder with a label file,
or class folders), prepares each image as its pair will be prepared
(`image_files.prepare_clean(crop)`; crop="damagenet" gives 224x224 as DAmageNet did),
attacks one surrogate (or an ensemble, `gradient.ensemble`) untargeted on the true label,
and writes `round(255 * x_adv)` as an 8-bit RGB PNG at the key's relative path
(`<stem>.png` or `<class>/<stem>.png`), so `tfrecords_builder` and `evaluate.py` pair the
output folder with the clean folder as they pair DAmageNet with ILSVRC2012 val.

Batches: images are grouped by prepared size, sorted by key within a group, and cut into
`batch_size` chunks. A batch is the unit of work. Randomness (PGD's start, input
diversity) is seeded per image by default (`seeding="image"`: a hash of `seed` and the
image's key, `attacks.draws`), so an image gets the same perturbation whatever its batch
mates: with another `batch_size` or `max_images` too (up to float round-off of batched
kernels). `seeding="batch"` (transfer sets made before) seeds each batch from its first
key, so an image's bytes depend on its batch; either way a fresh or resumed run with the
same settings writes the same bytes.

Resuming: each PNG is written to a hidden temporary name and `os.replace`d, then its
statistics are appended to `output_dir/.attack_stats.jsonl` (the sidecar, whose first
line holds the attack settings). An image is done when its PNG exists and the sidecar
has its record; a rerun skips batches whose images are all done, re-attacks the others
(writing only the missing files; done batch-mates are recomputed, not rewritten) and
retries images that failed. A rerun with different attack settings is refused.

`attack_manifest.json` (written atomically at the end of every run) aggregates the
sidecar over every PNG present: the surrogate's top-1 before and after (on the written
uint8 pixels), the perturbation's mean RMSD and max L-inf on the 0-255 scale (against
the clean image as prepared), counts, failures and the settings.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from cdgan_tf import classifiers
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.common import interrupts
from cdgan_tf.common import locks
from cdgan_tf.attacks import draws
from cdgan_tf.attacks import overlap
from cdgan_tf.attacks import settings as settings_lib
from cdgan_tf.attacks import stats
from cdgan_tf.attacks import transfer_files as tfiles
from cdgan_tf.data import folders
from cdgan_tf.data import image_files

Surrogate = Union[str, classifiers.Classifier]
# What the attack's gradient steps run for a TFLite surrogate: its float rebuild alone
# (default), or the interpreter's forward pass with the rebuild's gradient (the path
# before issue 22, about as fast as the rebuild's forward + backward again per step).
ATTACK_PATHS = ("rebuild", "interpreter")


def plan_batches(items: Sequence[Tuple[str, str, int, Tuple[int, int]]],
                 batch_size: int) -> List[list]:
  """Groups (key, path, label, (height, width)) items by size, then cuts batches.

  Sizes are taken in sorted order and keys in sorted order within a size, so the plan
  depends only on the items and batch_size.
  """
  by_size: Dict[Tuple[int, int], list] = {}
  for item in sorted(items):
    by_size.setdefault(tuple(item[3]), []).append(item)
  batches = []
  for size in sorted(by_size):
    group = by_size[size]
    batches += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
  return batches


def load_surrogates(surrogates: Sequence[Surrogate]) -> List[classifiers.Classifier]:
  """Loads classifier specs (see `classifiers.load_classifier`) and checks them.

  Raises:
    ValueError: no surrogate, a forward-only one (TFLite), or members whose class
      counts differ.
  """
  if isinstance(surrogates, (str, classifiers.Classifier)):
    surrogates = [surrogates]
  if not surrogates:
    raise errors.UsageError("no surrogate classifier given")
  loaded = [s if isinstance(s, classifiers.Classifier) else classifiers.load_classifier(s)
            for s in surrogates]
  for c in loaded:
    if not c.differentiable:
      raise errors.UsageError(
          f"surrogate {c.name} ({c.source or 'no source'}) is forward-only: a gradient "
          "attack needs a differentiable surrogate (Keras, SavedModel, TF-Hub, or a "
          "TFLite model whose ops the float rebuild supports); forward-only models can "
          "only be the target of the transfer set")
  if len({c.num_classes for c in loaded}) > 1:
    raise errors.UsageError("surrogates disagree on the class count: " + ", ".join(
        f"{c.name}: {c.num_classes}" for c in loaded))
  return loaded


def attack_functions(members: Sequence[classifiers.Classifier],
                     attack_path: str = "rebuild") -> list:
  """The differentiable callables the attack steps follow, one per surrogate.

  With attack_path="rebuild", a TFLite surrogate with a float rebuild is attacked
  through `rebuilt_scores` (its gradient is the rebuild's, as through the classifier,
  but no interpreter forward runs in each step; the cross-entropy's softmax then uses
  the rebuild's scores instead of the interpreter's); other surrogates are used as
  they are. Call once per run: the attack's compiled loops are cached per callable.

  Args:
    members: Loaded surrogates (`load_surrogates`).
    attack_path: One of ATTACK_PATHS.

  Returns:
    A list of callables images [N, H, W, 3] in [0, 1] -> scores [N, num_classes].
  """
  checks.check_choice("attack_path", attack_path, ATTACK_PATHS)
  if attack_path == "interpreter":
    return list(members)
  # One bound method per member, kept on it: the attack's loops are cached by the
  # callable's identity, so a second run with the same member does not trace again.
  return [vars(m).setdefault("_attack_rebuilt_scores", m.rebuilt_scores)
          if getattr(m, "rebuild", None) is not None else m for m in members]


def _spec_of(surrogate: Surrogate) -> str:
  spec = surrogate if isinstance(surrogate, str) else (surrogate.source or surrogate.name)
  return os.path.abspath(spec) if os.path.exists(spec) else spec


def _planned_size(path: str, crop: str) -> Tuple[int, int]:
  """(height, width) after preparation, from the header only (no decoding)."""
  if crop == "damagenet":
    return (image_files.DAMAGENET_SIZE, image_files.DAMAGENET_SIZE)
  try:
    with Image.open(path) as image:
      width, height = image.size
  except Exception as e:  # PIL raises many types on bad files; none may crash a run.
    raise image_files.ImageError(path, f"cannot read the image header ({type(e).__name__}: {e})"
                             ) from e
  too_big = image_files.over_limit_reason(width, height)  # Refused, listed as failed.
  if too_big:
    raise image_files.ImageError(path, too_big)
  return (height, width)


def _predictions(members, images: np.ndarray) -> np.ndarray:
  """int [1 + M, N]: the ensemble's (mean log-softmax) and each member's top-1."""
  logits = [tf.cast(m(tf.constant(images)), tf.float32) for m in members]
  combined = tf.add_n([tf.nn.log_softmax(l, axis=-1) for l in logits]) / len(logits)
  return np.stack([np.argmax(x, axis=-1) for x in [combined.numpy()] +
                   [l.numpy() for l in logits]])


def _list_items(clean_dir, labels_path, max_images: int, crop: str, surrogate):
  """The selected images as plan items, the unreadable ones, and the listing's skips."""
  listed, inputs_skipped = folders.list_labelled_images(clean_dir, labels_path)
  by_key = {key: (path, label) for key, path, label in listed}
  items, failed = [], []
  for key in folders.select_subset(list(by_key), max_images):
    path, label = by_key[key]
    if label >= surrogate.num_classes:
      raise errors.UsageError(f"{path}: label {label} is out of range for the surrogate "
                              f"{surrogate.name} ({surrogate.num_classes} classes)")
    try:
      items.append((key, path, label, _planned_size(path, crop)))
    except image_files.ImageError as e:
      failed.append({"key": key, "path": e.path, "reason": e.reason})
  return items, failed, inputs_skipped


def _load_batch(batch, crop: str):
  """Decodes and prepares a batch's images: ([(item, pixels uint8 [H, W, 3])], failures)."""
  loaded, failures = [], []
  for item in batch:
    try:
      image = image_files.prepare_clean(image_files.load_rgb(item[1]), crop)
      if image.shape[:2] != tuple(item[3]):
        raise image_files.ImageError(item[1], f"decoded size {image.shape[:2]} differs from "
                                 f"its header's {tuple(item[3])}")
    except image_files.ImageError as e:
      failures.append({"key": item[0], "path": e.path, "reason": e.reason})
      continue
    loaded.append((item, image))
  return loaded, failures


def _attack_loaded(loaded, members, attack: settings_lib.AttackSettings, seed,
                   attack_fns=None):
  """Attacks decoded images (through `attack_fns`, default the members).

  Returns:
    (adversarial uint8 [N, H, W, 3], top-1 before and after, int [1 + M, N]).
  """
  clean = np.stack([pixels for _, pixels in loaded]).astype(np.float32) / 255.0
  labels = np.array([item[2] for item, _ in loaded], np.int64)
  adversarial = attack.run(attack_fns or members, clean, labels, seed=seed)
  adv_u8 = np.clip(np.round(adversarial.numpy() * 255.0), 0, 255).astype(np.uint8)
  before = _predictions(members, clean)
  after = _predictions(members, adv_u8.astype(np.float32) / 255.0)
  return adv_u8, before, after


def _batch_records(loaded, done, adv_u8, before, after) -> List[dict]:
  """The sidecar records of the images not yet done."""
  records = []
  for i, ((item, pixels), is_done) in enumerate(zip(loaded, done)):
    if not is_done:
      perturbation = {k: round(v, 6) for k, v in  # Drops float noise: 16.000000000000014.
                      stats.perturbation_stats(pixels / 255.0, adv_u8[i] / 255.0).items()}
      records.append({"key": item[0], "label": int(item[2]), "size": list(item[3]),
                      "before": before[:, i].tolist(), "after": after[:, i].tolist(),
                      **perturbation})
  return records


def _write_batch(records: List[dict], pngs, output_dir: pathlib.Path, sidecar) -> None:
  """Writes the PNGs ({key: uint8 [H, W, 3]}), then appends their records."""
  for key, pixels in pngs.items():
    tfiles.write_png(tfiles.output_path(output_dir, key), pixels)
  tfiles.append_records(sidecar, records)


def _percent(fraction: Optional[float]) -> str:
  """0.7661538 -> "76.62 %" (figures for people); None -> "n/a"."""
  return "n/a" if fraction is None else f"{100.0 * fraction:.2f} %"


def _attack_all(batches, is_done, members, attack: settings_lib.AttackSettings, seed: int,
                crop: str, output_dir: pathlib.Path, failed: list, header: Optional[dict],
                log_every: int, total: int, attack_fns=None, stop=None,
                depth: int = 2, seeding: str = "image") -> dict:
  """Attacks every batch not yet done, appending records to the sidecar; returns counts.

  With depth > 0 the next `depth` batches are decoded and the finished ones written
  (PNGs, then their sidecar records) on threads while the attack runs (`overlap`);
  depth=0 does it all in turn, with byte-identical results. After a SIGTERM / SIGINT
  (`stop`, an `interrupts.StopRequests`) the batch under way is finished and written,
  and the rest left for a resume."""
  counts = {"attacked": 0, "skipped_done": 0, "recomputed_batch_mates": 0}
  new_records = []
  started, seen, next_log = time.perf_counter(), 0, log_every
  planned = ((batch, [is_done(item[0]) for item in batch]) for batch in batches)
  load = lambda planned: None if all(planned[1]) else _load_batch(planned[0], crop)  # noqa
  with tfiles.open_sidecar(output_dir / tfiles.SIDECAR, header) as sidecar, \
      overlap.Writer(depth) as writer:
    for (batch, done), loaded in overlap.read_ahead(planned, load, depth):
      seen += len(batch)
      counts["skipped_done"] += sum(done)
      if loaded is None:
        continue
      counts["recomputed_batch_mates"] += sum(done)
      loaded, failures = loaded
      failed += failures
      kept_done = [done[batch.index(item)] for item, _ in loaded]
      written = []
      if loaded:
        seeds = (draws.image_seeds(seed, [item[0] for item, _ in loaded])
                 if seeding == "image" else draws.batch_seed(seed, batch[0][0]))
        adv_u8, before, after = _attack_loaded(loaded, members, attack, seeds, attack_fns)
        written = _batch_records(loaded, kept_done, adv_u8, before, after)
        pngs = {item[0]: adv_u8[i] for i, ((item, _), d) in enumerate(zip(loaded, kept_done))
                if not d}
        writer.submit(_write_batch, written, pngs, output_dir, sidecar)
      counts["attacked"] += len(written)
      new_records += written
      if seen >= next_log or batch is batches[-1]:
        next_log = seen + log_every
        running = tfiles.summary(new_records, [])["surrogate_top1"]
        elapsed = max(time.perf_counter() - started, 1e-9)
        rate = counts["attacked"] / elapsed
        # Only attacked images cost time: already-done ones are skipped for free.
        eta = (total - seen) / max(rate, 1e-9)
        logging.info("%d/%d images (%.0f%%): %d attacked (%.1f images/s), %d already done, "
                     "%d failed; surrogate top-1 on this run's images %.2f -> %.2f; ETA %s",
                     seen, total, 100.0 * seen / max(total, 1), counts["attacked"], rate,
                     counts["skipped_done"], len(failed), running["before"] or 0.0,
                     running["after"] or 0.0, time.strftime("%H:%M:%S", time.gmtime(eta)))
      if stop is not None and stop.requested:
        counts["stopped_by"] = f"{stop.name} after {seen} of {total} images"
        break
  return counts


def generate(clean_dir, output_dir, surrogates: Sequence[Surrogate], labels_path=None,
             attack: Union[str, settings_lib.AttackSettings] = "mifgsm",
             eps: Union[str, float] = "16/255", steps: int = 10, step_size=None,
             decay: float = 1.0, diversity_prob: float = 0.0, crop: str = "none",
             batch_size: int = 32, max_images: int = 0, seed: int = 0,
             log_every: int = 500, command: Optional[dict] = None,
             attack_path: str = "rebuild", overlap_depth: int = 2,
             seeding: str = "image") -> dict:
  """Attacks the surrogate(s) on every clean image and writes the adversarial PNGs.

  Args:
    clean_dir: Flat folder of images (with `labels_path`) or class-folder root.
    output_dir: Created if needed; empty, or a previous run's folder (resumed).
    surrogates: Classifier specs (`classifiers.load_classifier`) or Classifier objects;
      several form an ensemble (`gradient.ensemble`). All must be differentiable.
    labels_path: Label file for the flat layout; None: class folders.
    attack: fgsm | pgd | pgd_l2 | mifgsm, untargeted; or ready `AttackSettings`
      (then eps, steps, step_size, decay and diversity_prob are ignored).
    eps: Budget as a float or text ("16/255"); L-inf in [0, 1], L2 for pgd_l2.
    steps: Iterations (not fgsm). step_size: None for the attack's default.
    decay, diversity_prob: MI-FGSM momentum and input-diversity probability.
    crop: "none" or "damagenet" (clean images prepared before the attack).
    batch_size: Images per attack batch (part of the deterministic plan).
    max_images: Attack only a fixed subset of this many images
      (`folders.select_subset`); 0: all.
    seed: Seed of the attacks' randomness (PGD start, input diversity).
    seeding: "image": each image's randomness from its own key (independent of its
      batch mates); "batch": one stream per batch (transfer sets made before; an
      output_dir whose sidecar does not record a seeding is such a set).
    log_every: Log progress every this many images.
    command: Command-line arguments to record in the manifest.
    attack_path: What the gradient steps run for TFLite surrogates (`ATTACK_PATHS`,
      `attack_functions`); recorded in the manifest, not a setting: a folder may be
      resumed with either.
    overlap_depth: Batches decoded ahead and written behind on threads while the
      attack runs (`overlap`); 0: all in turn. Not a setting: the bytes are the same.

  Returns:
    The manifest (also written to output_dir/attack_manifest.json).

  Raises:
    ValueError, FileExistsError, NotADirectoryError, FileNotFoundError: bad arguments,
      folders, label file or surrogates, or an output_dir made with other settings.
  """
  checks.check_choice("crop", crop, image_files.CROPS)
  checks.check_choice("attack_path", attack_path, ATTACK_PATHS)
  checks.check_choice("seeding", seeding, draws.SEEDINGS)
  if batch_size < 1 or max_images < 0 or overlap_depth < 0:
    raise errors.UsageError(f"batch_size={batch_size} must be >= 1, max_images={max_images} >= 0 "
                     f"and overlap_depth={overlap_depth} >= 0")
  if not isinstance(attack, settings_lib.AttackSettings):
    attack = settings_lib.AttackSettings.parse(attack, eps, steps, step_size, decay,
                                               diversity_prob)
  if isinstance(surrogates, (str, classifiers.Classifier)):
    surrogates = [surrogates]
  record = attack.record()
  settings = {"attack": {k: v for k, v in record.items() if k != "eps_text"},
              "surrogates": [_spec_of(s) for s in surrogates], "seed": int(seed),
              "crop": crop, "batch_size": int(batch_size), "max_images": int(max_images),
              "seeding": seeding}
  output_dir = pathlib.Path(output_dir)
  header, records = tfiles.check_output_dir(output_dir, clean_dir, settings)
  members = load_surrogates(surrogates)
  items, failed, inputs_skipped = _list_items(clean_dir, labels_path, max_images, crop,
                                              members[0])
  batches = plan_batches(items, batch_size)
  is_done = lambda key: key in records and tfiles.output_path(output_dir, key).exists()  # noqa
  logging.info("%d images selected (%d unreadable; %d inputs skipped while listing) in %d "
               "batches; %d already done in %s", len(items) + len(failed), len(failed),
               len(inputs_skipped), len(batches), sum(is_done(i[0]) for i in items),
               output_dir)

  run = {"attack": record,
         "surrogates": [{"spec": spec, "name": m.name, "input_size": list(m.input_size),
                         "num_classes": m.num_classes, "gradients": m.gradient_source}
                        for spec, m in zip(settings["surrogates"], members)],
         "seed": int(seed), "seeding": seeding, "crop": crop, "batch_size": batch_size,
         "max_images": max_images,
         "clean_dir": str(clean_dir),
         "labels": None if labels_path is None else str(labels_path),
         "output_dir": str(output_dir), "attack_path": attack_path,
         "overlap_depth": overlap_depth, "command": command}
  with locks.FolderLock(str(output_dir), "the transfer-set generator"), \
      interrupts.StopRequests() as stop:
    tfiles.remove_stale_temporaries(output_dir)
    started = time.perf_counter()
    counts = _attack_all(batches, is_done, members, attack, seed, crop, output_dir, failed,
                         settings if header is None else None, log_every, len(items),
                         attack_functions(members, attack_path), stop, overlap_depth,
                         seeding)
    seconds = time.perf_counter() - started
    counts.update(failed=len(failed))
    manifest = tfiles.write_manifest(output_dir, run, [m.name for m in members], counts,
                                     failed, inputs_skipped, seconds)
    stop.raise_if_requested(
        f"wrote the {counts['attacked']} images attacked so far to {output_dir} "
        f"({counts.get('stopped_by', '')}); rerun the same command to resume")
  top1, perturbation = manifest["surrogate_top1"], manifest["perturbation"]
  logging.info("%s: %d images (%d attacked now, %d already done, %d failed) in %.1f s; "
               "surrogate top-1 %s -> %s; RMSD %.2f, L-inf %.2f (0-255)", output_dir,
               manifest["counts"]["images"], counts["attacked"], counts["skipped_done"],
               len(failed), seconds, _percent(top1["before"]), _percent(top1["after"]),
               perturbation["rmsd_255_mean"] or 0.0, perturbation["linf_255_max"] or 0.0)
  return manifest
