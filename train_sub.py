r"""Trains the CD-GAN sub-resolution GAN: large adversarial image -> small clean image
(paper: 256x256 -> 64x64, 20 epochs).

Example:
  python train_sub.py --train_records='records/train-*' --val_records='records/val-*' \
      --model_dir=runs/sub --image_size=256 --scale=4 --batch_size=16

Rerunning the same command resumes from the newest checkpoint in --model_dir; a
finished run says so and exits 0. The trained generator is written to
<model_dir>/export/generator.keras. Monitor with: tensorboard --logdir=<model_dir>
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start(onednn=True)  # Before TensorFlow: quiet logs, oneDNN CPU kernels (cli.py).

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf import flags as cdgan_flags

cdgan_flags.define_training_flags(role="sub")
flags.adopt_module_key_flags(cdgan_flags)  # --help lists them
flags.adopt_module_key_flags(cli)


def main(argv):
  cdgan_flags.train_from_flags("sub", argv)


if __name__ == "__main__":
  cli.run(main)
