"""Distribution strategies and mixed precision for training.

One place turns the config's names into a `tf.distribute.Strategy`, so the same trainer
runs on one CPU, several GPUs (`mirrored`), several machines (`multi_worker`, configured
by the `TF_CONFIG` environment variable) and TPUs.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from cdgan_tf.common import errors

# One MirroredStrategy per device set and process: two of them on the same devices
# share collective-op instance keys and can deadlock or mix up all-reduces.
_MIRRORED = {}


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
  """Creates the named strategy.

  Args:
    name: "default" (no distribution), "mirrored" (all local GPUs, or all local CPU
      devices when there is no GPU), "multi_worker" (MultiWorkerMirroredStrategy,
      cluster from TF_CONFIG) or "tpu".
    tpu: TPU name or grpc address for "tpu" ("" lets the resolver find a local one).

  Returns:
    The strategy (for "mirrored", the same object on every call in a process). Create
    it before any other TensorFlow op in the process (a requirement of multi_worker).
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = tuple(d.name for d in (gpus or tf.config.list_logical_devices("CPU")))
    if devices not in _MIRRORED:
      _MIRRORED[devices] = tf.distribute.MirroredStrategy(devices=list(devices))
    return _MIRRORED[devices]
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise errors.UsageError("strategy multi_worker needs the TF_CONFIG environment variable "
                              "(cluster and task); see the README")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise errors.UsageError(f"unknown strategy {name!r}: use default, mirrored, multi_worker or tpu")


def set_mixed_precision(policy: str) -> None:
  """Sets Keras' global dtype policy ("none" restores float32)."""
  keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that owns checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type in (None, "chief"):
    return True
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
  """model_dir on the chief; a private scratch folder on other workers.

  Every worker must take part in saving a multi-worker checkpoint, but only the
  chief's copy is kept (the pattern of the TF multi-worker guide).
  """
  if is_chief(strategy):
    return model_dir
  task_id = strategy.cluster_resolver.task_id
  return os.path.join(model_dir, ".workers", f"worker_{task_id}")
