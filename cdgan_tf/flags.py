"""Shared absl flag definitions of the entry scripts, turned into config objects.

Only the training scripts (train_sub.py, train_super.py) call these; the library never
reads FLAGS. Each entry script defines its own flags with the help text that fits it
(`--sub_model` is the generator evaluate.py scores, and the frozen sub generator
train_super.py learns from); tests that run several scripts in one process give the
training flags their own `flags.FlagValues` instead of the global FLAGS.
"""

from __future__ import annotations

from absl import app
from absl import flags

from cdgan_tf import config as config_lib
from cdgan_tf.common import checks
from cdgan_tf.common import errors

_DEFAULTS = config_lib.ExperimentConfig()


def _training_flag_table():
  """(define, name, default, help, extra kwargs) of every training flag."""
  data, model, loss, train = _DEFAULTS.data, _DEFAULTS.model, _DEFAULTS.loss, _DEFAULTS.train
  runtime = _DEFAULTS.runtime
  f = flags
  positive, non_negative = {"lower_bound": 1}, {"lower_bound": 0}
  return [
      (f.DEFINE_string, "train_records", None, "Glob of training TFRecord shards, e.g. "
       "'records/train-*' (written by python -m tfrecords_builder); several globs "
       "joined by commas are read as one set.", {}),
      (f.DEFINE_list, "train_shares", [], "One weight per glob of --train_records, in "
       "order: the share of training examples drawn from that glob's records "
       "(normalised), e.g. 0.6,0.4 for a mix and a transfer set; empty: every record "
       "equally often.", {}),
      (f.DEFINE_string, "val_records", "", "Glob of validation shards ('' for none).", {}),
      (f.DEFINE_string, "model_dir", None, "Checkpoints, TensorBoard logs and the "
       "exported generator. Rerunning with the same model_dir resumes.", {}),
      (f.DEFINE_integer, "image_size", data.image_size, "Side of the large image "
       "(paper: 256).", positive),
      (f.DEFINE_integer, "scale", data.scale, "Large/small resolution ratio, a power of 2 "
       "(paper: 4).", positive),
      (f.DEFINE_integer, "batch_size", data.batch_size, "Global batch size (split across "
       "replicas).", positive),
      (f.DEFINE_integer, "epochs", None, "Epochs over the training split (default: the "
       "paper's, 20 for the sub GAN and 250 for the super GAN).", positive),
      (f.DEFINE_integer, "train_steps", None, "Total optimizer steps; overrides --epochs.",
       non_negative),
      (f.DEFINE_integer, "num_res_blocks", model.num_res_blocks, "Generator residual "
       "blocks.", non_negative),
      (f.DEFINE_integer, "filters", model.filters, "Generator feature maps.", positive),
      (f.DEFINE_integer, "discriminator_filters", model.discriminator_filters,
       "Discriminator feature maps of the first conv.", positive),
      (f.DEFINE_bool, "image_skip", model.image_skip, "Generators output a residual over "
       "the bicubic-resized input, so they start as plain resizing.", {}),
      (f.DEFINE_float, "learning_rate", train.learning_rate, "Adam learning rate of both "
       "networks.", {"lower_bound": 0.0}),
      (f.DEFINE_float, "beta_1", train.beta_1, "Adam beta1 of both networks.", {}),
      (f.DEFINE_enum, "content_loss", loss.content_loss, "Pixel content loss.",
       {"enum_values": config_lib.CONTENT_LOSSES}),
      (f.DEFINE_enum, "adversarial_loss", loss.adversarial_loss, "GAN loss.",
       {"enum_values": config_lib.ADVERSARIAL_LOSSES}),
      (f.DEFINE_float, "content_weight", loss.content_weight, "Weight of the content loss.",
       {"lower_bound": 0.0}),
      (f.DEFINE_float, "adversarial_weight", loss.adversarial_weight, "Weight of the "
       "generator's adversarial loss.", {"lower_bound": 0.0}),
      (f.DEFINE_float, "feature_weight", loss.feature_weight, "Weight of the feature loss "
       "(needs --feature_extractor).", {"lower_bound": 0.0}),
      (f.DEFINE_string, "feature_extractor", "", "Feature network of the feature loss: "
       "any classifier spec (Keras file, SavedModel dir, TF-Hub handle, .tflite via its "
       "float rebuild). Must be neither an evaluated target nor the attack's surrogate.",
       {}),
      (f.DEFINE_string, "feature_layer", "", "Layer (Keras) or tensor name/index "
       "(TFLite) of --feature_extractor whose outputs are compared; '' for its logits.",
       {}),
      (f.DEFINE_float, "clean_pair_fraction", data.clean_pair_fraction, "Share of every "
       "training batch made of (clean -> clean) pairs, so the purifier learns to leave "
       "clean images alone (0: the paper's adversarial pairs only).",
       {"lower_bound": 0.0, "upper_bound": 1.0}),
      (f.DEFINE_integer, "warmup_steps", train.warmup_steps, "Initial content-only steps "
       "(discriminator frozen).", non_negative),
      (f.DEFINE_integer, "steps_per_loop", runtime.steps_per_loop, "Steps per tf.function "
       "call.", positive),
      (f.DEFINE_integer, "checkpoint_every", runtime.checkpoint_every, "Steps between "
       "checkpoints.", positive),
      (f.DEFINE_integer, "summary_every", runtime.summary_every, "Steps between TensorBoard "
       "summaries and console progress lines.", positive),
      (f.DEFINE_integer, "eval_every", runtime.eval_every, "Steps between validation passes "
       "(0: only at the end).", non_negative),
      (f.DEFINE_integer, "eval_steps", runtime.eval_steps, "Validation batches per pass "
       "(0: all).", non_negative),
      (f.DEFINE_enum, "strategy", runtime.strategy, "Distribution: default, mirrored (local "
       "devices), multi_worker (TF_CONFIG) or tpu.",
       {"enum_values": config_lib.STRATEGIES}),
      (f.DEFINE_string, "tpu", "", "TPU name or address for --strategy=tpu.", {}),
      (f.DEFINE_enum, "mixed_precision", runtime.mixed_precision, "Mixed precision policy.",
       {"enum_values": config_lib.MIXED_PRECISION_POLICIES}),
      (f.DEFINE_bool, "augment", data.augment, "Paired random crop and flip.", {}),
      (f.DEFINE_float, "augment_min_scale", data.augment_min_scale, "Below 1: the paired "
       "crop is a random square of relative side U(this, 1) of the whole image (random "
       "scale for full-size photos); 1: an image_size crop of the 1.125x resize.",
       {"lower_bound": 0.01, "upper_bound": 1.0}),
      (f.DEFINE_bool, "deterministic", data.deterministic, "Reproducible input order and "
       "augmentation (slower input pipeline).", {}),
      (f.DEFINE_integer, "shuffle_buffer", data.shuffle_buffer, "Shuffle buffer "
       "(examples).", positive),
      (f.DEFINE_bool, "skip_damaged_shards", data.skip_damaged_shards, "Leave out record "
       "shards that differ from their manifest.json (count, sha256) and say how many "
       "records were lost, instead of refusing to start.", {}),
      (f.DEFINE_integer, "seed", train.seed, "Seed of weights, data order and "
       "augmentation.", {}),
      (f.DEFINE_string, "init_generator", "", "Warm start: an exported generator "
       "(.keras file, export folder or model_dir) of this role, scale and size whose "
       "weights the generator starts from at step 0 (a resumed run restores its own "
       "checkpoint instead); discriminator and optimizers start fresh. '' for random.",
       {}),
      (f.DEFINE_bool, "restart", False, "Train from step 0 although --model_dir holds "
       "checkpoints (they are moved to checkpoints/before-restart-<UTC>/). Without it a "
       "folder whose checkpoints are all damaged is refused.", {}),
      (f.DEFINE_integer, "keep_checkpoints", 3, "Newest checkpoints kept; more than one "
       "keeps a fallback when the newest is damaged.", positive),
      (f.DEFINE_bool, "allow_config_change", False, "Resume a run with changed settings "
       "(not shapes); the change is recorded in model_dir/config_history.json.", {}),
  ]


def _check_geometry_flags(values) -> bool:
  """--scale a power of 2 dividing --image_size (`checks.check_geometry`)."""
  checks.check_geometry(values["image_size"], values["scale"], flags.ValidationError,
                        names=("--image_size", "--scale"))
  return True


SUB_MODEL_HELP = ("Chained training: a trained sub generator (.keras file, export folder "
                  "or model_dir); the super GAN then learns from its outputs, what it "
                  "receives in the chain, instead of a bicubic downscale of the "
                  "adversarial image ('' for the paper's way).")


def define_training_flags(flag_values=flags.FLAGS, role: str = "sub") -> None:
  """Defines the flags of train_<role>.py in `flag_values`.

  Args:
    flag_values: Where (the global FLAGS for the scripts; a fresh `flags.FlagValues()`
      in tests, so several programs' flags never meet).
    role: "sub" or "super"; the super GAN also gets --sub_model (chained training).

  Raises:
    flags.DuplicateFlagError: called twice on the same `flag_values`.
  """
  role = config_lib.Role(role)
  for define, name, default, help_text, extra in _training_flag_table():
    extra = dict(extra)
    if define is flags.DEFINE_enum:
      define(name, default, extra.pop("enum_values"), help_text, flag_values=flag_values)
    else:
      define(name, default, help_text, flag_values=flag_values, **extra)
  if role is config_lib.Role.SUPER:
    flags.DEFINE_string("sub_model", "", SUB_MODEL_HELP, flag_values=flag_values)
  flags.mark_flags_as_required(["train_records", "model_dir"], flag_values=flag_values)
  flags.register_multi_flags_validator(
      ["image_size", "scale"], _check_geometry_flags, flag_values=flag_values)
  flags.register_multi_flags_validator(
      ["feature_weight", "feature_extractor"],
      lambda d: d["feature_weight"] == 0 or bool(d["feature_extractor"]),
      "--feature_weight > 0 needs --feature_extractor", flag_values=flag_values)


def experiment_from_flags(role: config_lib.Role,
                          flag_values=flags.FLAGS) -> config_lib.ExperimentConfig:
  """Builds the ExperimentConfig of `role` from parsed flags (`config.from_flat`)."""
  f = flag_values
  role = config_lib.Role(role)
  run_options = ("restart", "keep_checkpoints", "allow_config_change", "sub_model")
  values = {name: f[name].value for _, name, *_ in _training_flag_table()
            if name not in run_options}
  values["epochs"] = f.epochs or role.paper_epochs
  if role is config_lib.Role.SUPER and "sub_model" in f:
    values["sub_model"] = f["sub_model"].value or ""
  return config_lib.from_flat(role=role, **values)


def train_from_flags(role: config_lib.Role, argv, flag_values=flags.FLAGS) -> dict:
  """The main() of train_sub.py / train_super.py: parsed flags -> a finished run."""
  from cdgan_tf.training import controller  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  patterns = [("--train_records", flag_values.train_records),
              ("--val_records", flag_values.val_records)]
  from cdgan_tf.data import pipeline  # pylint: disable=import-outside-toplevel
  for flag, pattern in patterns:
    if pattern:
      try:
        pipeline.match_files(pattern)
      except errors.UsageError as e:
        raise errors.UsageError(f"no file matches {flag}={pattern!r} ({e})") from None
  return controller.run(experiment_from_flags(role, flag_values),
                        allow_config_change=flag_values.allow_config_change,
                        restart=flag_values.restart,
                        keep_checkpoints=flag_values.keep_checkpoints)

