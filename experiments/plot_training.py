r"""Plots GAN training curves from TensorBoard event files into one PNG.

  python experiments/plot_training.py --runs=sub=/tmp/cdgan_cifar/runs/sub,\
super=/tmp/cdgan_cifar/runs/super --output=docs/results/cifar10/training.png

Left: the training losses (generator content and discriminator) per run; right: the
validation PSNR of each generator next to plain bicubic resizing, read back with
TensorBoard's own event reader.
"""

import os

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
import tensorflow as tf  # noqa: E402

flags.DEFINE_list("runs", None, "name=model_dir pairs.")
flags.DEFINE_string("output", "training.png", "Output PNG.")
flags.mark_flag_as_required("runs")
FLAGS = flags.FLAGS


def _scalars(directory: str, tag: str):
  accumulator = event_accumulator.EventAccumulator(
      directory, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  if tag not in accumulator.Tags()["tensors"]:
    return [], []
  events = accumulator.Tensors(tag)
  return ([e.step for e in events],
          [float(tf.make_ndarray(e.tensor_proto)) for e in events])


def main(argv):
  del argv
  fig, (losses, psnr) = plt.subplots(1, 2, figsize=(11, 4))
  for item in FLAGS.runs:
    name, model_dir = item.split("=", 1)
    train, evaluation = os.path.join(model_dir, "train"), os.path.join(model_dir, "eval")
    losses.plot(*_scalars(train, "loss/generator_content"), label=f"{name}: G content")
    losses.plot(*_scalars(train, "loss/discriminator"), "--", label=f"{name}: D")
    line, = psnr.plot(*_scalars(evaluation, "metrics/psnr"), "o-", label=f"{name} G")
    psnr.plot(*_scalars(evaluation, "metrics/bicubic_psnr"), ":", color=line.get_color(),
              label=f"{name}: bicubic")
  losses.set_xlabel("step")
  losses.set_yscale("log")
  losses.set_title("training losses")
  losses.legend(fontsize=8)
  psnr.set_xlabel("step")
  psnr.set_ylabel("val PSNR (dB)")
  psnr.set_title("validation PSNR vs bicubic resizing")
  psnr.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  fig.savefig(FLAGS.output, dpi=90)
  print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
