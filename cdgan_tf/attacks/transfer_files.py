"""The files of a transfer set: adversarial PNGs, the resumable sidecar, the manifest.

  <output_dir>/<key>.png          round(255 * x_adv), 8-bit RGB, lossless
  <output_dir>/.attack_stats.jsonl   the sidecar: first line {"settings": ...}, then one
                                  record per finished image (appended, fsynced)
  <output_dir>/attack_manifest.json  the summary over every PNG present

Each PNG is written to a hidden temporary name and renamed; a killed run leaves at
most a temporary file (removed by the next run) and a torn last sidecar line (ignored).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Dict, List, Optional, Tuple

from absl import logging
import numpy as np
from PIL import Image

from cdgan_tf.common import errors
from cdgan_tf.common import files

MANIFEST = "attack_manifest.json"
SIDECAR = ".attack_stats.jsonl"
PNG_COMPRESS_LEVEL = 3  # As tfrecords_builder: deterministic, fast, lossless.


def output_path(output_dir, key: str) -> pathlib.Path:
  """Where the adversarial image of `key` ("stem" or "class/stem") is written."""
  return pathlib.Path(output_dir, *key.split("/")).with_name(key.split("/")[-1] + ".png")


def write_png(path: pathlib.Path, pixels: np.ndarray) -> None:
  """Writes uint8 [H, W, 3] atomically: never a partial PNG under the final name."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with files.atomic_path(str(path)) as tmp:
    Image.fromarray(pixels).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def remove_stale_temporaries(output_dir: pathlib.Path) -> None:
  """Removes the temporary files killed runs left anywhere under output_dir."""
  for directory, _, _ in os.walk(output_dir):
    files.remove_stale_temporaries(directory)


def read_sidecar(path: pathlib.Path) -> Tuple[Optional[dict], Dict[str, dict]]:
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


# What a setting that older sidecars do not record was when they were made.
LEGACY_SETTINGS = {"seeding": "batch"}


def check_output_dir(output_dir: pathlib.Path, clean_dir, settings: dict):
  """Refuses a foreign or differently-made output_dir; returns its sidecar (header, records)."""
  clean = pathlib.Path(clean_dir).resolve()
  out = output_dir.resolve()
  if out == clean or clean in out.parents:
    raise errors.UsageError(f"output_dir {output_dir} must not be inside clean_dir {clean_dir}")
  if output_dir.exists() and not output_dir.is_dir():
    raise NotADirectoryError(f"output_dir {output_dir} exists and is not a directory")
  if not (output_dir / SIDECAR).exists():
    if output_dir.is_dir() and any(not e.name.startswith(".") for e in output_dir.iterdir()):
      raise FileExistsError(f"output_dir {output_dir} is not empty and has no {SIDECAR}: "
                            "not a transfer set made by this tool; choose an empty folder")
    return None, {}
  header, records = read_sidecar(output_dir / SIDECAR)
  if header is None:  # Killed before the header was written: nothing to compare.
    return None, records
  # A setting the header lacks was not recorded by older versions: it had the value of
  # LEGACY_SETTINGS if listed there, else it cannot be compared.
  header = {**{k: v for k, v in LEGACY_SETTINGS.items() if k in settings}, **header}
  differences = [f"{k}: {header[k]!r} there, {v!r} now" for k, v in settings.items()
                 if k in header and header[k] != v]
  if differences:
    raise errors.UsageError(f"output_dir {output_dir} holds a transfer set made with other "
                            f"settings ({'; '.join(differences)}); a changed max_images or "
                            "batch_size would change which images share a batch and so their "
                            "bytes: use another output_dir")
  return header, records


def _top1(labels, predictions) -> Optional[float]:
  return float(np.mean(np.equal(labels, predictions))) if len(labels) else None


def summary(records: List[dict], names: List[str]) -> dict:
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


def open_sidecar(path: pathlib.Path, settings: Optional[dict]):
  """Opens for appending, ending a torn last line; writes the settings header if given."""
  torn = path.exists() and path.stat().st_size and path.read_bytes()[-1:] != b"\n"
  sidecar = open(path, "a", encoding="utf-8")
  if torn:
    sidecar.write("\n")
  if settings is not None:
    sidecar.write(json.dumps({"settings": settings}, sort_keys=True) + "\n")
  return sidecar


def append_records(sidecar, records: List[dict]) -> None:
  """Appends per-image records to the open sidecar and makes them durable."""
  sidecar.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
  sidecar.flush()
  os.fsync(sidecar.fileno())


def write_manifest(output_dir: pathlib.Path, run: dict, member_names: List[str],
                   counts: dict, failed: List[dict], inputs_skipped, seconds: float) -> dict:
  """Aggregates the sidecar over the PNGs present and writes attack_manifest.json.

  Args:
    output_dir: The transfer set's folder.
    run: The settings of this run (attack record, surrogates, seed, crop, ...).
    member_names: Surrogate names (an ensemble also reports each member's top-1).
    counts: This run's counts (attacked, skipped_done, ...).
    failed: Images that could not be read, with reasons.
    inputs_skipped: `folders.Skipped` entries from listing the clean folder.
    seconds: This run's wall time.

  Returns:
    The manifest.
  """
  _, records = read_sidecar(output_dir / SIDECAR)
  present = [r for k, r in sorted(records.items()) if output_path(output_dir, k).exists()]
  totals = summary(present, member_names)
  previous = {}
  if (output_dir / MANIFEST).exists():
    previous = json.loads((output_dir / MANIFEST).read_text(encoding="utf-8"))
  manifest = dict(run)
  manifest.update({
      "counts": {"images": totals["images"], **counts,
                 "inputs_skipped": len(inputs_skipped)},
      "surrogate_top1": totals["surrogate_top1"],
      "perturbation": totals["perturbation"],
      "failed": sorted(failed, key=lambda f: f["key"]),
      "inputs_skipped": [{"path": s.path, "kind": s.kind, "reason": s.reason}
                         for s in inputs_skipped],
      "runs": previous.get("runs", []) + [
          dict(counts, seconds=round(seconds, 3), command=run.get("command"))],
  })
  files.write_json(str(output_dir / MANIFEST), manifest, indent=1)
  return manifest
