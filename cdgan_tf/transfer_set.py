"""DAmageNet-style transfer sets: attack surrogate classifiers, write adversarial PNGs.

`generate()` is the library part of `python -m tfrecords_builder.attack`. It lists a
folder of clean images (`folders.list_labelled_images`: a flat folder with a label file,
or class folders), prepares each image as its pair will be prepared
(`folders.prepare_clean(crop)`; crop="damagenet" gives 224x224 as DAmageNet did),
attacks one surrogate (or an ensemble, `attacks.ensemble`) untargeted on the true label,
and writes `round(255 * x_adv)` as an 8-bit RGB PNG at the key's relative path
(`<stem>.png` or `<class>/<stem>.png`), so `tfrecords_builder` and `evaluate.py` pair the
output folder with the clean folder as they pair DAmageNet with ILSVRC2012 val.

Batches: images are grouped by prepared size, sorted by key within a group, and cut into
`batch_size` chunks. A batch is the unit of work and of randomness (its seed is a hash of
`seed` and its first key), so an image always lands in the same batch with the same
batch-mates and gets the same perturbation, in a fresh run or a resumed one.

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

import hashlib
import json
import os
import pathlib
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from cdgan_tf import attacks
from cdgan_tf import classifiers
from cdgan_tf.data import folders

MANIFEST = "attack_manifest.json"
SIDECAR = ".attack_stats.jsonl"
PNG_COMPRESS_LEVEL = 3  # As tfrecords_builder: deterministic, fast, lossless.
_TMP_MARK = ".png.tmp-"
# Parameters each attack takes besides eps (attacks.run_attack refuses others).
_ATTACK_PARAMS = {"fgsm": (), "pgd": ("steps", "step_size", "seed"),
                  "pgd_l2": ("steps", "step_size", "seed"),
                  "mifgsm": ("steps", "step_size", "decay", "diversity_prob", "seed")}
Surrogate = Union[str, classifiers.Classifier]


def output_path(output_dir, key: str) -> pathlib.Path:
  """Where the adversarial image of `key` ("stem" or "class/stem") is written."""
  return pathlib.Path(output_dir, *key.split("/")).with_name(key.split("/")[-1] + ".png")


def batch_seed(seed: int, first_key: str) -> int:
  """The attack seed of the batch starting at `first_key` (a non-negative int63)."""
  digest = hashlib.sha256(f"{seed}/{first_key}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") >> 1


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
    raise ValueError("no surrogate classifier given")
  loaded = [s if isinstance(s, classifiers.Classifier) else classifiers.load_classifier(s)
            for s in surrogates]
  for c in loaded:
    if not c.differentiable:
      raise ValueError(
          f"surrogate {c.name} ({c.source or 'no source'}) is forward-only (e.g. TFLite): "
          "a gradient attack needs a differentiable surrogate (Keras, SavedModel, TF-Hub); "
          "forward-only models can only be the target of the transfer set")
  if len({c.num_classes for c in loaded}) > 1:
    raise ValueError("surrogates disagree on the class count: " + ", ".join(
        f"{c.name}: {c.num_classes}" for c in loaded))
  return loaded


def _spec_of(surrogate: Surrogate) -> str:
  spec = surrogate if isinstance(surrogate, str) else (surrogate.source or surrogate.name)
  return os.path.abspath(spec) if os.path.exists(spec) else spec


def _attack_settings(attack, eps, steps, step_size, decay, diversity_prob) -> dict:
  """Validates the attack options; returns what the manifest and sidecar record."""
  if attack not in _ATTACK_PARAMS:
    raise ValueError(f"attack={attack!r} is not one of {', '.join(attacks.ATTACKS)}")
  takes = _ATTACK_PARAMS[attack]
  eps_value = attacks.parse_eps(eps)
  if attack != "pgd_l2" and eps_value > 1.0:
    raise ValueError(f"eps={eps!r} exceeds the [0, 1] pixel range; did you mean {eps}/255?")
  for name, value, default in (("step_size", step_size, None), ("decay", decay, 1.0),
                               ("diversity_prob", diversity_prob, 0.0)):
    if value != default and name not in takes:
      raise ValueError(f"{name}={value} does not apply to attack {attack!r}")
  if not 0.0 <= float(diversity_prob) <= 1.0:
    raise ValueError(f"diversity_prob={diversity_prob} must be in [0, 1]")
  if int(steps) < 1:
    raise ValueError(f"steps={steps} must be >= 1")
  steps = int(steps) if "steps" in takes else 1
  given = None if step_size is None else attacks.parse_eps(step_size)
  default = {"fgsm": eps_value, "mifgsm": eps_value / steps}.get(attack, 2.5 * eps_value / steps)
  return {"name": attack, "eps": eps_value, "eps_text": str(eps),
          "eps_255": eps_value * 255.0, "steps": steps, "step_size": given,
          "step_size_effective": default if given is None else given,
          "decay": float(decay) if "decay" in takes else None,
          "diversity_prob": float(diversity_prob) if "diversity_prob" in takes else None}


def _params(settings: dict) -> dict:
  """run_attack keyword arguments (without seed) from the recorded settings."""
  params = {"eps": settings["eps"]}
  for name in _ATTACK_PARAMS[settings["name"]]:
    if name != "seed" and settings[name] is not None:
      params[name] = settings[name]
  return params


def _planned_size(path: str, crop: str) -> Tuple[int, int]:
  """(height, width) after preparation, from the header only (no decoding)."""
  if crop == "damagenet":
    return (folders.DAMAGENET_SIZE, folders.DAMAGENET_SIZE)
  try:
    with Image.open(path) as image:
      return (image.size[1], image.size[0])
  except Exception as e:  # PIL raises many types on bad files; none may crash a run.
    raise folders.ImageError(path, f"cannot read the image header ({type(e).__name__}: {e})"
                             ) from e


def _write_png(path: pathlib.Path, pixels: np.ndarray) -> None:
  """Writes atomically: a killed run leaves a hidden temporary file, never a partial PNG."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.stem}{_TMP_MARK}{os.getpid()}")
  Image.fromarray(pixels).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
  os.replace(tmp, path)


def _remove_stale_temporaries(output_dir: pathlib.Path) -> None:
  for directory, _, files in os.walk(output_dir):
    for name in files:
      if name.startswith(".") and _TMP_MARK in name:
        os.remove(os.path.join(directory, name))


def _read_sidecar(path: pathlib.Path) -> Tuple[Optional[dict], Dict[str, dict]]:
  """(settings header or None, {key: latest record}); a torn last line is ignored."""
  if not path.exists():
    return None, {}
  header, records = None, {}
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, start=1):
    try:
      entry = json.loads(line)
    except json.JSONDecodeError:
      logging.warning("%s:%d: ignoring an unreadable line (interrupted write?)", path, number)
      continue
    if "settings" in entry:
      header = header or entry["settings"]
    else:
      records[entry["key"]] = entry
  return header, records


def _check_output_dir(output_dir: pathlib.Path, clean_dir, settings: dict):
  """Refuses a foreign or differently-made output_dir; returns its sidecar (header, records)."""
  clean = pathlib.Path(clean_dir).resolve()
  out = output_dir.resolve()
  if out == clean or clean in out.parents:
    raise ValueError(f"output_dir {output_dir} must not be inside clean_dir {clean_dir}")
  if output_dir.exists() and not output_dir.is_dir():
    raise NotADirectoryError(f"output_dir {output_dir} exists and is not a directory")
  if not (output_dir / SIDECAR).exists():
    if output_dir.is_dir() and any(output_dir.iterdir()):
      raise FileExistsError(f"output_dir {output_dir} is not empty and has no {SIDECAR}: "
                            "not a transfer set made by this tool; choose an empty folder")
    return None, {}
  header, records = _read_sidecar(output_dir / SIDECAR)
  if header is None:  # Killed before the header was written: nothing to compare.
    return None, records
  differences = [f"{k}: {header.get(k)!r} there, {v!r} now" for k, v in settings.items()
                 if header.get(k) != v]
  if differences:
    raise ValueError(f"output_dir {output_dir} holds a transfer set made with other "
                     f"settings ({'; '.join(differences)}); use another output_dir")
  return header, records


def _top1(labels, predictions) -> Optional[float]:
  return float(np.mean(np.equal(labels, predictions))) if len(labels) else None


def _summary(records: List[dict], names: List[str]) -> dict:
  """Aggregates per-image records: top-1 before/after and perturbation statistics."""
  labels = [r["label"] for r in records]
  out = {"images": len(records),
         "surrogate_top1": {"before": _top1(labels, [r["before"][0] for r in records]),
                            "after": _top1(labels, [r["after"][0] for r in records])},
         "perturbation": {
             "rmsd_255_mean": float(np.mean([r["rmsd_255"] for r in records]))
                              if records else None,
             "linf_255_max": max((r["linf_255"] for r in records), default=None)}}
  if len(names) > 1:  # Index 0 is the ensemble, 1.. the members.
    out["surrogate_top1"]["members"] = [
        {"name": name, "before": _top1(labels, [r["before"][i + 1] for r in records]),
         "after": _top1(labels, [r["after"][i + 1] for r in records])}
        for i, name in enumerate(names)]
  return out


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
      raise ValueError(f"{path}: label {label} is out of range for the surrogate "
                       f"{surrogate.name} ({surrogate.num_classes} classes)")
    try:
      items.append((key, path, label, _planned_size(path, crop)))
    except folders.ImageError as e:
      failed.append({"key": key, "path": e.path, "reason": e.reason})
  return items, failed, inputs_skipped


def _attack_batch(batch, done, members, attack: str, params: dict, crop: str,
                  output_dir: pathlib.Path, failed: list) -> List[dict]:
  """Attacks one batch, writes the PNGs not yet done; returns their records."""
  kept, pixels = [], []
  for item, is_done in zip(batch, done):
    try:
      image = folders.prepare_clean(folders.load_rgb(item[1]), crop)
      if image.shape[:2] != tuple(item[3]):
        raise folders.ImageError(item[1], f"decoded size {image.shape[:2]} differs from "
                                 f"its header's {tuple(item[3])}")
    except folders.ImageError as e:
      failed.append({"key": item[0], "path": e.path, "reason": e.reason})
      continue
    kept.append((item, is_done))
    pixels.append(image)
  if not kept:
    return []
  clean = np.stack(pixels).astype(np.float32) / 255.0
  labels = np.array([item[2] for item, _ in kept], np.int64)
  adversarial = attacks.run_attack(attack, members, clean, labels, **params)
  adv_u8 = np.clip(np.round(adversarial.numpy() * 255.0), 0, 255).astype(np.uint8)
  before = _predictions(members, clean)
  after = _predictions(members, adv_u8.astype(np.float32) / 255.0)
  records = []
  for i, (item, is_done) in enumerate(kept):
    if not is_done:
      _write_png(output_path(output_dir, item[0]), adv_u8[i])
      stats = {k: round(v, 6) for k, v in  # Drops float noise: L-inf 16.000000000000014.
               attacks.perturbation_stats(pixels[i] / 255.0, adv_u8[i] / 255.0).items()}
      records.append({"key": item[0], "label": int(item[2]), "size": list(item[3]),
                      "before": before[:, i].tolist(), "after": after[:, i].tolist(),
                      **stats})
  return records


def _open_sidecar(path: pathlib.Path, settings: Optional[dict]):
  """Opens for appending, ending a torn last line; writes the settings header if given."""
  torn = path.exists() and path.stat().st_size and path.read_bytes()[-1:] != b"\n"
  sidecar = open(path, "a", encoding="utf-8")
  if torn:
    sidecar.write("\n")
  if settings is not None:
    sidecar.write(json.dumps({"settings": settings}, sort_keys=True) + "\n")
  return sidecar


def _write_json(path: pathlib.Path, content: dict) -> None:
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(content, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)


def generate(clean_dir, output_dir, surrogates: Sequence[Surrogate], labels_path=None,
             attack: str = "mifgsm", eps: Union[str, float] = "16/255", steps: int = 10,
             step_size=None, decay: float = 1.0, diversity_prob: float = 0.0,
             crop: str = "none", batch_size: int = 32, max_images: int = 0, seed: int = 0,
             log_every: int = 500, command: Optional[dict] = None) -> dict:
  """Attacks the surrogate(s) on every clean image and writes the adversarial PNGs.

  Args:
    clean_dir: Flat folder of images (with `labels_path`) or class-folder root.
    output_dir: Created if needed; empty, or a previous run's folder (resumed).
    surrogates: Classifier specs (`classifiers.load_classifier`) or Classifier objects;
      several form an ensemble (`attacks.ensemble`). All must be differentiable.
    labels_path: Label file for the flat layout; None: class folders.
    attack: fgsm | pgd | pgd_l2 | mifgsm (`attacks.run_attack`), untargeted.
    eps: Budget as a float or text ("16/255"); L-inf in [0, 1], L2 for pgd_l2.
    steps: Iterations (not fgsm). step_size: None for the attack's default.
    decay, diversity_prob: MI-FGSM momentum and input-diversity probability.
    crop: "none" or "damagenet" (clean images prepared before the attack).
    batch_size: Images per attack batch (part of the deterministic plan).
    max_images: Attack only a fixed subset of this many images
      (`folders.select_subset`); 0: all.
    seed: Seed of the attacks' randomness (PGD start, input diversity).
    log_every: Log progress every this many images.
    command: Command-line arguments to record in the manifest.

  Returns:
    The manifest (also written to output_dir/attack_manifest.json).

  Raises:
    ValueError, FileExistsError, NotADirectoryError, FileNotFoundError: bad arguments,
      folders, label file or surrogates, or an output_dir made with other settings.
  """
  if crop not in folders.CROPS:
    raise ValueError(f"crop={crop!r} is not one of {', '.join(folders.CROPS)}")
  if batch_size < 1 or max_images < 0:
    raise ValueError(f"batch_size={batch_size} must be >= 1 and max_images={max_images} >= 0")
  attack_settings = _attack_settings(attack, eps, steps, step_size, decay, diversity_prob)
  if isinstance(surrogates, (str, classifiers.Classifier)):
    surrogates = [surrogates]
  settings = {"attack": {k: v for k, v in attack_settings.items() if k != "eps_text"},
              "surrogates": [_spec_of(s) for s in surrogates], "seed": int(seed),
              "crop": crop}
  output_dir = pathlib.Path(output_dir)
  header, records = _check_output_dir(output_dir, clean_dir, settings)
  members = load_surrogates(surrogates)
  items, failed, inputs_skipped = _list_items(clean_dir, labels_path, max_images, crop,
                                              members[0])
  batches = plan_batches(items, batch_size)
  is_done = lambda key: key in records and output_path(output_dir, key).exists()  # noqa
  logging.info("%d images selected (%d unreadable; %d inputs skipped while listing) in %d "
               "batches; %d already done in %s", len(items) + len(failed), len(failed),
               len(inputs_skipped), len(batches), sum(is_done(i[0]) for i in items),
               output_dir)

  output_dir.mkdir(parents=True, exist_ok=True)
  _remove_stale_temporaries(output_dir)
  params = _params(attack_settings)
  counts = {"attacked": 0, "skipped_done": 0, "recomputed_batch_mates": 0}
  new_records = []
  started, seen, next_log = time.perf_counter(), 0, log_every
  with _open_sidecar(output_dir / SIDECAR, settings if header is None else None) as sidecar:
    for batch in batches:
      done = [is_done(item[0]) for item in batch]
      seen += len(batch)
      counts["skipped_done"] += sum(done)
      if all(done):
        continue
      counts["recomputed_batch_mates"] += sum(done)
      if "seed" in _ATTACK_PARAMS[attack]:
        params["seed"] = batch_seed(seed, batch[0][0])
      written = _attack_batch(batch, done, members, attack, params, crop, output_dir, failed)
      sidecar.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in written))
      sidecar.flush()
      os.fsync(sidecar.fileno())
      counts["attacked"] += len(written)
      new_records += written
      if seen >= next_log or batch is batches[-1]:
        next_log = seen + log_every
        running = _summary(new_records, [])["surrogate_top1"]
        rate = counts["attacked"] / max(time.perf_counter() - started, 1e-9)
        logging.info("%d/%d images: %d attacked (%.1f images/s), %d already done, %d "
                     "failed; surrogate top-1 on this run's images %.4f -> %.4f", seen,
                     len(items), counts["attacked"], rate, counts["skipped_done"],
                     len(failed), running["before"] or 0.0, running["after"] or 0.0)
  seconds = time.perf_counter() - started

  _, records = _read_sidecar(output_dir / SIDECAR)
  present = [r for k, r in sorted(records.items()) if output_path(output_dir, k).exists()]
  summary = _summary(present, [m.name for m in members])
  previous = {}
  if (output_dir / MANIFEST).exists():
    previous = json.loads((output_dir / MANIFEST).read_text(encoding="utf-8"))
  counts.update(failed=len(failed))
  manifest = {
      "attack": attack_settings,
      "surrogates": [{"spec": spec, "name": m.name, "input_size": list(m.input_size),
                      "num_classes": m.num_classes}
                     for spec, m in zip(settings["surrogates"], members)],
      "seed": int(seed), "crop": crop, "batch_size": batch_size, "max_images": max_images,
      "clean_dir": str(clean_dir), "labels": None if labels_path is None else str(labels_path),
      "output_dir": str(output_dir), "command": command,
      "counts": {"images": summary["images"], **counts,
                 "inputs_skipped": len(inputs_skipped)},
      "surrogate_top1": summary["surrogate_top1"],
      "perturbation": summary["perturbation"],
      "failed": sorted(failed, key=lambda f: f["key"]),
      "inputs_skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason}
                         for s in inputs_skipped],
      "runs": previous.get("runs", []) + [
          dict(counts, seconds=round(seconds, 3), command=command)],
  }
  _write_json(output_dir / MANIFEST, manifest)
  top1 = summary["surrogate_top1"]
  logging.info("%s: %d images (%d attacked now, %d already done, %d failed) in %.1f s; "
               "surrogate top-1 %s -> %s; RMSD %s, L-inf %s (0-255)", output_dir,
               summary["images"], counts["attacked"], counts["skipped_done"], len(failed),
               seconds, top1["before"], top1["after"],
               summary["perturbation"]["rmsd_255_mean"],
               summary["perturbation"]["linf_255_max"])
  return manifest
