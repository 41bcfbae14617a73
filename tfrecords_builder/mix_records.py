"""An attack-mix set (`cdgan_tf.attacks.mix_set`) -> train/val TFRecords + manifest.json.

`pack()` reads the generator's sidecar (every version whose PNG exists), pairs each
adversarial PNG with its clean original at full stored size (`pairs.encode_pair`, crop
"none": both sides keep their bytes when they are 8-bit RGB PNG or JPEG) and writes
records with the attack keys (`attack/name`, `attack/eps`, see
`cdgan_tf.data.features`). The split is `builder.split_of(image key)`, so every version
of one clean image lands in the same split (val never sees a train image under another
attack). Records go round-robin over the shards in sorted key order; shards are
written in a hidden folder and moved into place, `manifest.json` last (the pipeline
reads its counts). Same inputs, same bytes (sha256 in the manifest).
"""

from __future__ import annotations

import collections
import math
import os
import pathlib
import shutil
import tempfile
from typing import Optional

from absl import logging

from cdgan_tf.attacks import mix_set
from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.common import locks
from tfrecords_builder import builder
from tfrecords_builder import pairs as pairs_lib

RECORDS_DIR = "records"


def pack(mix_dir, output_dir=None, val_fraction: float = 0.05, seed: int = 0,
         examples_per_shard: int = builder.EXAMPLES_PER_SHARD) -> dict:
  """Packs the versions present in `mix_dir` into TFRecords.

  Args:
    mix_dir: Output folder of `mix_set.generate`.
    output_dir: Where the shards go; default <mix_dir>/records. Previous shards and
      manifest there are replaced.
    val_fraction: Fraction of clean images (all their versions) in the val split.
    seed: Seed of the split hash.
    examples_per_shard: About this many records per shard.

  Returns:
    The records manifest (also <output_dir>/manifest.json).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cdgan_tf.data import features  # pylint: disable=g-import-not-at-top
  if not 0.0 <= val_fraction < 1.0:
    raise errors.UsageError(f"val_fraction={val_fraction} is not in [0, 1)")
  mix_dir = pathlib.Path(mix_dir)
  output_dir = pathlib.Path(output_dir or mix_dir / RECORDS_DIR)
  records = mix_set.present_records(mix_dir)
  if not records:
    raise errors.UsageError(f"{mix_dir}: no finished version to pack")
  by_split = {s: [r for r in records
                  if builder.split_of(r["image_key"], val_fraction, seed) == s]
              for s in builder.SPLITS}
  totals = {s: math.ceil(len(by_split[s]) / examples_per_shard) for s in builder.SPLITS}
  output_dir.mkdir(parents=True, exist_ok=True)
  with locks.FolderLock(str(output_dir), "the attack-mix packer"):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".incomplete-", dir=output_dir))
    try:
      shards, per_attack, skipped = {}, {}, []
      for split in builder.SPLITS:
        names = [builder.shard_name(split, i, totals[split]) for i in range(totals[split])]
        writers = [tf.io.TFRecordWriter(str(tmp / n)) for n in names]
        counts = [0] * len(names)
        attacks = collections.Counter()
        for i, record in enumerate(by_split[split]):
          task = pairs_lib.Task(record["key"], mix_set.adversarial_path(mix_dir, record["key"]),
                                record["clean_path"], record["label"], "none")
          result = pairs_lib.encode_pair(task)
          if "example" not in result:
            skipped += [{"path": s.path, "kind": s.kind, "reason": s.reason}
                        for s in result["skipped"]]
            continue
          adv, adv_size, clean, clean_size = result["example"]
          example = features.make_example(adv, adv_size, clean, clean_size,
                                          record["label"], record["key"],
                                          attack_name=record["attack"],
                                          attack_eps=record["eps"])
          writers[i % len(writers)].write(example.SerializeToString(deterministic=True))
          counts[i % len(writers)] += 1
          attacks[record["attack"]] += 1
        for writer in writers:
          writer.close()
        shards[split] = [{"file": n, "examples": c, "sha256": builder._sha256(tmp / n)}  # pylint: disable=protected-access
                         for n, c in zip(names, counts)]
        per_attack[split] = dict(sorted(attacks.items()))
      for entry in output_dir.glob("*.tfrecord"):
        entry.unlink()
      for split in builder.SPLITS:
        for shard in shards[split]:
          os.replace(tmp / shard["file"], output_dir / shard["file"])
      manifest = {
          "schema_version": features.SCHEMA_VERSION,
          "source": {"mix_dir": str(mix_dir),
                     "mix_manifest": str(mix_dir / mix_set.MANIFEST)},
          "arguments": {"val_fraction": val_fraction, "seed": seed,
                        "examples_per_shard": examples_per_shard},
          "counts": {s: sum(x["examples"] for x in shards[s]) for s in builder.SPLITS},
          "images": {s: len({r["image_key"] for r in by_split[s]}) for s in builder.SPLITS},
          "per_attack": per_attack,
          "shards": shards,
          "skipped": skipped,
      }
      files.write_json(str(output_dir / builder.MANIFEST), manifest, indent=1)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  logging.info("packed %s into %s: %s records %s", mix_dir, output_dir, manifest["counts"],
               per_attack)
  return manifest


def manifest_path(output_dir: Optional[str], mix_dir) -> str:
  return os.path.join(output_dir or os.path.join(mix_dir, RECORDS_DIR), builder.MANIFEST)
