"""The tf.data input pipeline: paired TFRecords -> (adversarial input, clean target).

Records follow `cdgan_tf.data.features` (encoded images at their stored size). The
pipeline resizes them for one GAN role:

  role "sub":   adversarial at image_size        -> clean at image_size // scale
  role "super": adversarial at image_size//scale -> clean at image_size

Training (`train_dataset`): seeded file shuffle -> shard by input pipeline -> repeat ->
parallel interleave -> shuffle (with `DataConfig.train_shares`: one such stream per
comma-joined glob, drawn by those weights) -> parse + paired augmentation -> batch(drop_remainder) ->
prefetch (the layout of tensorflow/models and google/automl input pipelines). The augmentation resizes
both images to round(1.125 * image_size), takes one random image_size crop window and one
random horizontal flip and applies them to both images, so the pair stays aligned; the
small side is then produced from the crop with `image_ops.resize`. With
`DataConfig.augment_min_scale` < 1 (full-size photos) the window is instead a random
square of relative side U(min_scale, 1) of the whole image, taken in relative
coordinates on both sides and resized to image_size. The random ops are
stateless, seeded by (seed, element index), so with `DataConfig.deterministic` the
batches are the same run to run for the same seed.

Evaluation (`eval_dataset`): sorted files, no shuffle, augmentation or repeat; both
images resized to image_size; batch(drop_remainder=False). Training is `train_dataset`.

Images are resized to squares; records of non-square images are stretched.
"""

from __future__ import annotations

import json
import os
import re
from typing import List, Optional

import tensorflow as tf

from cdgan_tf import config
from cdgan_tf import image_ops
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.data import features
from cdgan_tf.data import shards

AUGMENT_ZOOM = 1.125
MANIFEST = "manifest.json"
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d+)-of-(?P<total>\d+)(\.[^.]*)?$")
_MAX_CYCLE = 16


def match_files(pattern: str) -> List[str]:
  """The sorted shard files of a glob, or of several globs joined by commas.

  "a/train-*,b/train-*" reads both sets of records as one training set (e.g. an
  attack mix next to a transfer set); each glob must match at least one file.

  Raises:
    UsageError: a glob that matches no file (named).
  """
  files = set()
  for piece in (p.strip() for p in pattern.split(",")):
    matched = tf.io.gfile.glob(piece) if piece else []
    if not matched:
      raise errors.UsageError(f"no TFRecord file matches pattern {piece!r}")
    files.update(matched)
  return sorted(files)


def crop_source_size(image_size: int) -> int:
  """Side of the resize that training crops come from: round(1.125 * image_size)."""
  return int(round(AUGMENT_ZOOM * image_size))


def _for_role(adversarial, clean, role: config.Role, small_size, large_input=False):
  """(adversarial, clean) both [S, S, 3] -> the role's (input, target) pair.

  With `large_input` (super role, chained training) the input stays at S: the trainer
  passes it through the frozen sub generator.
  """
  if role is config.Role.SUB:
    return adversarial, image_ops.resize(clean, small_size)
  if large_input:
    return adversarial, clean
  return image_ops.resize(adversarial, small_size), clean


def clean_pair_count(data_config: config.DataConfig, batch_size: int) -> int:
  """How many of a batch's `batch_size` pairs are (clean -> clean): round(F * B)."""
  return int(round(data_config.clean_pair_fraction * batch_size))


def _scaled_crop_pair(adversarial, clean, image_size, seed, min_scale: float):
  """One random square window of relative side s ~ U(min_scale, 1), on both images.

  The window is drawn in relative coordinates (top and left ~ U(0, 1 - s) of each
  side), so it covers the same part of both images even when their sizes differ, and
  each side is resized (bilinear) from it to S x S.
  """
  scale_seed, top_seed, left_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  side = tf.random.stateless_uniform([], scale_seed, min_scale, 1.0)
  top = tf.random.stateless_uniform([], top_seed) * (1.0 - side)
  left = tf.random.stateless_uniform([], left_seed) * (1.0 - side)
  box = tf.reshape(tf.stack([top, left, top + side, left + side]), [1, 4])

  def crop(image):
    out = tf.image.crop_and_resize(image[None], box, [0], [image_size, image_size])[0]
    return tf.clip_by_value(out, 0.0, 1.0)
  return crop(adversarial), crop(clean)


def _augment_pair(adversarial, clean, image_size, seed, min_scale: float = 1.0):
  """Identical random crop window and flip on both images.

  Args:
    adversarial: float32 [H1, W1, 3] in [0, 1].
    clean: float32 [H2, W2, 3] in [0, 1].
    image_size: Side S of the crop.
    seed: int64 [2] seed of the stateless random ops.
    min_scale: 1.0: an S crop of the 1.125 S resize (the default); below 1: a window
      of relative side U(min_scale, 1) of the full image, resized to S
      (`_scaled_crop_pair`; random scale for full-size photos).

  Returns:
    (adversarial, clean), each float32 [S, S, 3] in [0, 1].
  """
  if min_scale < 1.0:
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    adversarial, clean = _scaled_crop_pair(adversarial, clean, image_size, crop_seed,
                                           min_scale)
    pair = tf.image.stateless_random_flip_left_right(
        tf.concat([adversarial, clean], axis=-1), seed=flip_seed)
    return pair[..., :3], pair[..., 3:]
  source = crop_source_size(image_size)
  pair = tf.concat([image_ops.resize(adversarial, source),
                    image_ops.resize(clean, source)], axis=-1)
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  pair = tf.image.stateless_random_crop(pair, [image_size, image_size, 6], seed=crop_seed)
  pair = tf.image.stateless_random_flip_left_right(pair, seed=flip_seed)
  return pair[..., :3], pair[..., 3:]


def _checked(data_config: config.DataConfig, role, large_input: bool,
             pattern: Optional[str], field: str):
  """(role, pattern, all matching files, the files to read) after the shared checks."""
  role = config.Role(checks.check_choice("role", str(role), config.ROLES))
  if large_input and role is not config.Role.SUPER:
    raise errors.UsageError("large_input (chained training) is for the super role only")
  if pattern is None:
    pattern = getattr(data_config, field)
    if not pattern:
      raise errors.UsageError(f"DataConfig.{field} is empty: no TFRecord pattern to read")
  all_files = match_files(pattern)
  return role, pattern, all_files, shards.check_files(all_files,
                                                      data_config.skip_damaged_shards)


def _replica_split(data_config: config.DataConfig,
                   input_context: Optional[tf.distribute.InputContext]):
  """(per-replica batch size, number of input pipelines, this pipeline's id)."""
  if input_context is None:
    return data_config.batch_size, 1, 0
  return (input_context.get_per_replica_batch_size(data_config.batch_size),
          input_context.num_input_pipelines, input_context.input_pipeline_id)


def eval_dataset(data_config: config.DataConfig, role: config.Role,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 pattern: Optional[str] = None,
                 large_input: bool = False) -> tf.data.Dataset:
  """The evaluation pipeline of one GAN role: every record once, in file order.

  Args:
    data_config: Sizes and batch size.
    role: Role.SUB or Role.SUPER ("sub" / "super" accepted).
    input_context: From `strategy.distribute_datasets_from_function`: shards the
      records and sets the per-replica batch size.
    pattern: Glob of TFRecord shards (default: data_config.val_pattern).
    large_input: Role "super" only: inputs at S instead of S/scale (chained training).

  Returns:
    A dataset of (adversarial_input, clean_target) float32 in [0, 1], shapes as
    `train_dataset`'s; the last batch may be smaller than B.

  Raises:
    errors.UsageError: unknown role, empty pattern, a pattern matching no file.
  """
  role, _, _, files = _checked(data_config, role, large_input, pattern, "val_pattern")
  batch_size, num_pipelines, pipeline_id = _replica_split(data_config, input_context)
  image_size, small_size = data_config.image_size, data_config.small_size
  ds = tf.data.TFRecordDataset(files)
  if num_pipelines > 1:
    ds = ds.shard(num_pipelines, pipeline_id)

  def eval_map(serialized):
    example = features.parse_example(serialized)
    return _for_role(image_ops.resize(example["adversarial"], image_size),
                     image_ops.resize(example["clean"], image_size), role, small_size,
                     large_input)

  ds = ds.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=False)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _shuffled_records(pattern: str, files: List[str], all_files: List[str], seed: int,
                      num_pipelines: int, pipeline_id: int,
                      shuffle_buffer: int) -> tf.data.Dataset:
  """Seeded file order -> shard by pipeline -> repeat -> interleave -> shuffle."""
  if len(files) < num_pipelines:
    raise errors.UsageError(
        f"pattern {pattern!r} matches {len(files)} files, fewer than the "
        f"{num_pipelines} input pipelines that each need at least one")
  if len(files) == len(all_files) and "," not in pattern:
    ds = tf.data.Dataset.list_files(pattern, shuffle=True, seed=seed)
  else:  # Several globs, or damaged shards left out (list_files shuffles its sorted
    # matches so).
    ds = tf.data.Dataset.from_tensor_slices(sorted(files)).shuffle(len(files), seed=seed)
  if num_pipelines > 1:
    ds = ds.shard(num_pipelines, pipeline_id)
  ds = ds.repeat()
  files_per_pipeline = -(-len(files) // num_pipelines)
  ds = ds.interleave(tf.data.TFRecordDataset,
                     cycle_length=min(files_per_pipeline, _MAX_CYCLE), block_length=1,
                     num_parallel_calls=tf.data.AUTOTUNE)
  return ds.shuffle(shuffle_buffer, seed=seed)


def _shared_records(pattern: str, files: List[str], shares, seed: int, num_pipelines: int,
                    pipeline_id: int, shuffle_buffer: int) -> tf.data.Dataset:
  """One `_shuffled_records` stream per comma-joined glob, drawn by `shares`.

  Each element comes from glob i with probability shares[i] / sum(shares) (seeded
  `sample_from_datasets`); every stream repeats, so none runs dry.

  Raises:
    UsageError: the number of shares is not the number of globs.
  """
  pieces = [p.strip() for p in pattern.split(",")]
  if len(pieces) != len(shares):
    raise errors.UsageError(
        f"train_shares has {len(shares)} values for the {len(pieces)} globs of "
        f"{pattern!r}: give one per glob")
  readable = set(files)
  streams = []
  for i, piece in enumerate(pieces):
    matched = match_files(piece)
    streams.append(_shuffled_records(
        piece, [f for f in matched if f in readable], matched, seed + i, num_pipelines,
        pipeline_id, shuffle_buffer))
  total = float(sum(shares))
  return tf.data.Dataset.sample_from_datasets(
      streams, weights=[float(s) / total for s in shares], seed=seed)


def train_dataset(data_config: config.DataConfig, role: config.Role,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  pattern: Optional[str] = None, seed: int = 0,
                  large_input: bool = False, start_step: int = 0) -> tf.data.Dataset:
  """The training pipeline of one GAN role: shuffled, augmented, repeated forever.

  Args:
    data_config: Sizes, batch size, augmentation, determinism, shuffle buffer, the
      clean-pair fraction.
    role: Role.SUB or Role.SUPER ("sub" / "super" accepted).
    input_context: From `strategy.distribute_datasets_from_function`: shards the input
      by file and sets the per-replica batch size.
    pattern: Glob of TFRecord shards, or several joined by commas (default:
      data_config.train_pattern; with data_config.train_shares, one share per glob).
    seed: Seed of the file order, the shuffle, the draw between globs and the
      augmentation.
    large_input: Role "super" only: inputs at S instead of S/scale (chained training,
      where the trainer runs the sub generator on them).
    start_step: Skip the elements of the first `start_step` global steps, so a resumed
      run sees the batches an uninterrupted one would (exactly so with
      `deterministic`).

  Returns:
    A dataset of (adversarial_input, clean_target) float32 in [0, 1]:
    role "sub": ([B, S, S, 3], [B, S/scale, S/scale, 3]);
    role "super": ([B, S/scale, S/scale, 3], [B, S, S, 3]) (inputs [B, S, S, 3] with
    `large_input`),
    with S = data_config.image_size and B exactly the per-replica batch size. The
    first round(clean_pair_fraction * B) pairs of every batch are (clean -> clean):
    their input is the clean image, prepared as the role prepares an adversarial one.

  Raises:
    errors.UsageError: unknown role, empty pattern, a pattern matching no file, or
      fewer files than input pipelines.
  """
  role, pattern, all_files, files = _checked(data_config, role, large_input, pattern,
                                             "train_pattern")
  batch_size, num_pipelines, pipeline_id = _replica_split(data_config, input_context)
  image_size, small_size = data_config.image_size, data_config.small_size
  if data_config.train_shares:
    ds = _shared_records(pattern, files, data_config.train_shares, seed, num_pipelines,
                         pipeline_id, data_config.shuffle_buffer)
  else:
    ds = _shuffled_records(pattern, files, all_files, seed, num_pipelines, pipeline_id,
                           data_config.shuffle_buffer)
  ds = ds.enumerate()
  if start_step:  # Each step takes global_batch / num_pipelines elements per pipeline.
    ds = ds.skip(start_step * (data_config.batch_size // num_pipelines))
  clean_pairs = clean_pair_count(data_config, batch_size)

  def train_map(index, serialized):
    example = features.parse_example(serialized)
    adversarial, clean = example["adversarial"], example["clean"]
    if data_config.augment:
      # Unique per element and per pipeline, so shards do not share crops.
      element_seed = tf.stack([tf.constant(seed, tf.int64),
                               index * num_pipelines + pipeline_id])
      adversarial, clean = _augment_pair(adversarial, clean, image_size, element_seed,
                                         data_config.augment_min_scale)
    else:
      adversarial = image_ops.resize(adversarial, image_size)
      clean = image_ops.resize(clean, image_size)
    generator_input, target = _for_role(adversarial, clean, role, small_size, large_input)
    if not clean_pairs:
      return generator_input, target
    clean_input, _ = _for_role(clean, clean, role, small_size, large_input)
    return generator_input, clean_input, target

  ds = ds.map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True)
  if clean_pairs:
    # After batching, so every batch holds exactly `clean_pairs` clean pairs even when
    # a non-deterministic map reorders elements.
    ds = ds.map(lambda adversarial, clean, target: (
        tf.concat([clean[:clean_pairs], adversarial[clean_pairs:]], axis=0), target),
                num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = bool(data_config.deterministic)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def build_dataset(data_config: config.DataConfig, role: config.Role, training: bool,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  pattern: Optional[str] = None, seed: int = 0,
                  large_input: bool = False, start_step: int = 0) -> tf.data.Dataset:
  """`train_dataset` when `training`, else `eval_dataset` (seed and start_step are
  training's only)."""
  if training:
    return train_dataset(data_config, role, input_context, pattern, seed, large_input,
                         start_step)
  return eval_dataset(data_config, role, input_context, pattern, large_input)


def _count_from_manifest(files: List[str]) -> Optional[int]:
  """The manifest's count when `files` are exactly all shards of one split, else None."""
  directories = {os.path.dirname(f) for f in files}
  if len(directories) != 1:
    return None
  path = os.path.join(directories.pop(), MANIFEST)
  if not tf.io.gfile.exists(path):
    return None
  matches = [_SHARD_RE.match(os.path.basename(f)) for f in files]
  if not all(matches):
    return None
  splits = {m["split"] for m in matches}
  totals = {int(m["total"]) for m in matches}
  if len(splits) != 1 or len(totals) != 1:
    return None
  if sorted(int(m["index"]) for m in matches) != list(range(totals.pop())):
    return None  # Only some shards of the split: count them instead.
  try:
    with tf.io.gfile.GFile(path) as f:
      count = json.load(f)["counts"][splits.pop()]
  except (ValueError, KeyError, TypeError):
    return None
  return int(count) if isinstance(count, int) and count >= 0 else None


def count_examples(pattern: str) -> int:
  """Number of records in the files matching `pattern` (globs joined by commas).

  Per folder: reads `manifest.json` next to the shards (`{"counts": {"train": n, ...}}`)
  when the files are exactly all shards `<split>-NNNNN-of-MMMMM.tfrecord` of one split;
  otherwise reads the files and counts.

  Raises:
    ValueError: the pattern matches no file.
  """
  by_folder = {}
  for path in match_files(pattern):
    by_folder.setdefault(os.path.dirname(path), []).append(path)
  total = 0
  for files in by_folder.values():  # Each folder's manifest, else its records counted.
    count = _count_from_manifest(files)
    if count is None:
      ds = tf.data.TFRecordDataset(files)
      count = int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    total += count
  return total
