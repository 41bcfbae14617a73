"""Paired image folders -> sharded TFRecords (`cdgan_tf.data.features`) + manifest.json.

`build()` is the library part of `python -m tfrecords_builder`; it takes arguments,
never flags. Steps:
  1. `folders.pair_folders` pairs the two folders (by stem with a label file, else by
     class-folder relative path); every input left out is listed with its reason.
  2. Each pair goes to "val" when a stable hash of (seed, key) falls below
     `val_fraction`, else to "train", so reruns give the same split; within a split the
     sorted pairs go round-robin into the shards.
  3. Worker processes decode and encode the images (deterministic output order):
       adversarial: an 8-bit RGB PNG or any JPEG keeps its original bytes; anything else
         (other lossless formats, grayscale/RGBA/palette/16-bit PNG) is re-encoded as an
         8-bit RGB PNG of the decoded pixels, listed under "converted";
       clean: `image_files.prepare_clean(crop)` then PNG; with crop="none" an 8-bit RGB PNG
         or RGB JPEG keeps its original bytes ("as is").
     Undecodable / empty / truncated files are skipped and listed together with their
     partner; pairs whose aspect ratios differ after the crop are kept and listed under
     "warnings".
  4. Records are serialised deterministically (sorted proto map keys), so the same
     inputs give byte-identical shards (same sha256) in any process, with any workers.
  5. Shards are written into `<output_dir>/.incomplete-*`, moved into place, and
     `manifest.json` is written last: an output folder without manifest is incomplete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import multiprocessing
import os
import pathlib
import shutil
import tempfile
from typing import Dict, Optional, Sequence

from absl import logging

from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.common import locks
from cdgan_tf.data import folders
from cdgan_tf.data import image_files
from tfrecords_builder import pairs as pairs_lib

SPLITS = ("train", "val")
MANIFEST = "manifest.json"
EXAMPLES_PER_SHARD = 1000
_TMP_PREFIX = ".incomplete-"
_MAX_LOGGED_WARNINGS = 10  # All of them are in the manifest.
ASPECT_MISMATCH = "aspect_mismatch"


def split_of(key: str, val_fraction: float, seed: int = 0) -> str:
  """"val" or "train" from a stable hash of (seed, key): reruns give the same split."""
  digest = hashlib.sha256(f"{seed}/{key}".encode("utf-8")).digest()
  return "val" if int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction else "train"


def shard_name(split: str, index: int, total: int) -> str:
  return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def default_num_shards(num_examples: int) -> int:
  """About one shard per EXAMPLES_PER_SHARD examples, at least 1."""
  return max(1, math.ceil(num_examples / EXAMPLES_PER_SHARD))


def _check_output_dir(output_dir: pathlib.Path, overwrite: bool) -> None:
  """Refuses a file, or a folder with visible entries (unless overwrite).

  Hidden entries do not count: the lock file and a crashed build's `.incomplete-*`
  folder (which `_remove_incomplete` clears).
  """
  if output_dir.exists() and not output_dir.is_dir():
    raise NotADirectoryError(f"output_dir {output_dir} exists and is not a directory")
  visible = [e.name for e in output_dir.iterdir() if not e.name.startswith(".")] if (
      output_dir.is_dir()) else []
  if visible and not overwrite:
    raise FileExistsError(f"output_dir {output_dir} is not empty ({len(visible)} entries, "
                          f"e.g. {sorted(visible)[0]}); pass --overwrite to replace its "
                          "records and manifest")


def _remove_incomplete(output_dir: pathlib.Path) -> None:
  """Removes what an interrupted build left (its hidden `.incomplete-*` folder)."""
  for entry in sorted(output_dir.glob(f"{_TMP_PREFIX}*")):
    logging.warning("removing %s, left by an interrupted build", entry)
    shutil.rmtree(entry, ignore_errors=True)


def _clear_previous(output_dir: pathlib.Path, keep: pathlib.Path) -> None:
  """With overwrite: removes our old manifest (first), shards and incomplete folders."""
  (output_dir / MANIFEST).unlink(missing_ok=True)
  for entry in sorted(output_dir.iterdir()):
    if entry == keep or entry.name == locks.LOCK_FILE:
      continue
    if entry.is_dir() and entry.name.startswith(_TMP_PREFIX):
      shutil.rmtree(entry)
    elif any(entry.name.startswith(f"{s}-") for s in SPLITS) and entry.suffix == ".tfrecord":
      entry.unlink()
    else:
      logging.warning("overwrite: leaving %s in place (not written by this builder)", entry)


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _results(tasks: Sequence[pairs_lib.Task], workers: int):
  """Yields `encode_pair` results in task order, in a spawn process pool if workers > 1."""
  if workers <= 1 or len(tasks) <= 1:
    yield from map(pairs_lib.encode_pair, tasks)
    return
  with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
    yield from pool.imap(pairs_lib.encode_pair, tasks, chunksize=4)


def _as_dict(skipped: folders.Skipped) -> dict:
  return {"path": skipped.path, "kind": skipped.kind, "reason": skipped.reason}


def build(adversarial_dir, clean_dir, output_dir, labels_path=None, crop: str = "none",
          num_shards: Optional[int] = None, val_fraction: float = 0.05, workers: int = 1,
          seed: int = 0, overwrite: bool = False, log_every: int = 1000,
          command: Optional[dict] = None,
          size_check: Optional[pairs_lib.SizeCheck] = None,
          holdout_subset: int = 0) -> dict:
  """Builds train/val TFRecord shards and manifest.json from two paired folders.

  Args:
    adversarial_dir: Folder of adversarial images.
    clean_dir: Folder of clean originals (same layout).
    output_dir: Created if needed; must be empty unless `overwrite`.
    labels_path: Label file for the flat layout (pair by stem); None: class folders.
    crop: "none" or "damagenet" (see `image_files.prepare_clean`).
    num_shards: Train shards (capped at the train count); None: one per ~1,000
      examples. Validation shards hold the same number of examples per shard.
    val_fraction: Fraction in [0, 1) of keys that go to the val split.
    workers: Processes decoding and encoding images (1: in this process).
    seed: Seed of the split hash.
    overwrite: Replace the records and manifest of a non-empty output_dir.
    log_every: Log progress every this many pairs.
    command: Command-line arguments to record in the manifest.
    size_check: Which pairs are suspicious by size and what to do with them
      (default: warn in the manifest; see `pairs.SizeCheck`).
    holdout_subset: Leave out the N pairs that `evaluate.py --max_images=N` evaluates
      on the same folders (`folders.select_subset` of the pair keys), so a test split
      chosen that way never reaches training; 0: keep every pair.

  Returns:
    The manifest (also written to output_dir/manifest.json).

  Raises:
    ValueError, NotADirectoryError, FileNotFoundError, FileExistsError: bad arguments,
      folders or label file, no pair at all, or a non-empty output_dir.
    LockError: another build writes output_dir.
  """
  checks.check_choice("crop", crop, image_files.CROPS)
  if not 0.0 <= val_fraction < 1.0:
    raise errors.UsageError(f"val_fraction={val_fraction} is not in [0, 1)")
  if num_shards is not None and num_shards < 1:
    raise errors.UsageError(f"num_shards={num_shards} must be at least 1")
  if workers < 1:
    raise errors.UsageError(f"workers={workers} must be at least 1")
  size_check = size_check or pairs_lib.SizeCheck()
  output_dir = pathlib.Path(output_dir)
  if output_dir.exists() and not output_dir.is_dir():
    raise NotADirectoryError(f"output_dir {output_dir} exists and is not a directory")
  _check_output_dir(output_dir, overwrite)
  pairs, skipped = folders.pair_folders(adversarial_dir, clean_dir, labels_path)
  held_out = set(folders.select_subset([p.key for p in pairs], holdout_subset)
                 ) if holdout_subset else set()
  pairs = [p for p in pairs if p.key not in held_out]
  if not pairs:
    kinds = sorted({s.kind for s in skipped})
    raise errors.UsageError(f"no pair found between {adversarial_dir} and {clean_dir} "
                     f"({len(skipped)} files skipped: {', '.join(kinds) or 'folders empty'})")
  with locks.FolderLock(str(output_dir), "the records builder"):
    _check_output_dir(output_dir, overwrite)  # Again: another build may have written.
    _remove_incomplete(output_dir)
    manifest = _build(adversarial_dir, clean_dir, output_dir, labels_path, crop,
                      num_shards, val_fraction, workers, seed, overwrite, log_every,
                      command, size_check, pairs, skipped, len(held_out), holdout_subset)
  return manifest


def _build(adversarial_dir, clean_dir, output_dir: pathlib.Path, labels_path, crop,
           num_shards, val_fraction, workers, seed, overwrite, log_every, command,
           size_check: pairs_lib.SizeCheck, pairs, skipped, held_out: int,
           holdout_subset: int) -> dict:
  """`build` once the pairs are known and the folder is locked and checked."""
  by_split = {s: [p for p in pairs if split_of(p.key, val_fraction, seed) == s] for s in SPLITS}
  train_shards = min(num_shards or default_num_shards(len(by_split["train"])),
                     max(1, len(by_split["train"])))
  per_shard = math.ceil(len(by_split["train"]) / train_shards) or EXAMPLES_PER_SHARD
  totals = {"train": train_shards if by_split["train"] else 0,
            "val": math.ceil(len(by_split["val"]) / per_shard)}
  logging.info("%d pairs (%d train in %d shards, %d val in %d shards), %d inputs skipped "
               "while pairing", len(pairs), len(by_split["train"]), totals["train"],
               len(by_split["val"]), totals["val"], len(skipped))

  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (keeps workers light)
  from cdgan_tf.data import features  # pylint: disable=g-import-not-at-top

  output_dir.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=output_dir))
  try:
    tasks, destinations = [], []
    for split in SPLITS:
      for i, pair in enumerate(by_split[split]):
        tasks.append(pairs_lib.Task(pair.key, pair.adversarial_path, pair.clean_path,
                                    pair.label, crop, size_check))
        destinations.append((split, i % max(1, totals[split])))
    names = {(s, i): shard_name(s, i, totals[s]) for s in SPLITS for i in range(totals[s])}
    writers = {k: tf.io.TFRecordWriter(str(tmp / name)) for k, name in names.items()}
    counts = {k: 0 for k in names}
    converted, warnings = [], []
    done = 0
    for (split, shard), result in zip(destinations, _results(tasks, workers)):
      skipped += result["skipped"]
      converted += [{"path": p, "side": side, "reason": r} for p, side, r in result["converted"]]
      for warning in result["warnings"]:
        if len(warnings) < _MAX_LOGGED_WARNINGS:
          logging.warning("%s: %s", warning["key"], warning["reason"])
        warnings.append(warning)
      if "example" in result:
        adv, adv_size, clean, clean_size = result["example"]
        example = features.make_example(adv, adv_size, clean, clean_size,
                                        result["label"], result["key"])
        writers[(split, shard)].write(example.SerializeToString(deterministic=True))
        counts[(split, shard)] += 1
      done += 1
      if done % log_every == 0 or done == len(tasks):
        logging.info("%d/%d pairs: %d written, %d inputs skipped, %d converted", done,
                     len(tasks), sum(counts.values()), len(skipped), len(converted))
    for writer in writers.values():
      writer.close()

    shards = {s: [{"file": names[(s, i)], "examples": counts[(s, i)],
                   "sha256": _sha256(tmp / names[(s, i)])} for i in range(totals[s])]
              for s in SPLITS}
    split_counts = {s: sum(x["examples"] for x in shards[s]) for s in SPLITS}
    skipped_by_kind: Dict[str, int] = {}
    for s in skipped:
      skipped_by_kind[s.kind] = skipped_by_kind.get(s.kind, 0) + 1
    manifest = {
        "schema_version": features.SCHEMA_VERSION,
        "arguments": {
            "adversarial_dir": str(adversarial_dir), "clean_dir": str(clean_dir),
            "labels": None if labels_path is None else str(labels_path), "crop": crop,
            "output_dir": str(output_dir), "num_shards": num_shards,
            "val_fraction": val_fraction, "workers": workers, "seed": seed,
            "overwrite": overwrite, "size_check": dataclasses.asdict(size_check),
            "holdout_subset": holdout_subset},
        "command": command,
        "counts": split_counts,
        "inputs": {"pairs_found": len(pairs) + held_out, "held_out": held_out,
                   "examples_written": sum(split_counts.values()),
                   "skipped": len(skipped),
                   "skipped_by_kind": dict(sorted(skipped_by_kind.items())),
                   "converted": len(converted), "warnings": len(warnings)},
        "shards": shards,
        "skipped": [_as_dict(s) for s in sorted(skipped, key=lambda s: (s.path, s.kind))],
        "converted": converted,
        "warnings": warnings,
    }
    if overwrite:
      _clear_previous(output_dir, keep=tmp)
    for s in SPLITS:
      for shard in shards[s]:
        os.replace(tmp / shard["file"], output_dir / shard["file"])
    files.write_json(str(output_dir / MANIFEST), manifest, indent=1)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info("wrote %d train (%d shards) + %d val (%d shards) examples to %s; skipped %d "
               "inputs %s; converted %d; %d warnings", split_counts["train"], totals["train"],
               split_counts["val"], totals["val"], output_dir, len(skipped),
               manifest["inputs"]["skipped_by_kind"], len(converted), len(warnings))
  return manifest
