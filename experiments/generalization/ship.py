r"""Copies a trained sub + super run into a weights folder through generator_files.

  python experiments/generalization/ship.py --run=/work/scratch/mixtrain/s2 \
      --dest=weights/cifar10/cdgan_mix_scale2

Reads <run>/{sub,super}/export (generator.keras + generator.json), writes
<dest>/{sub,super}/ with `generator_files.save_generator`; a chained super generator's
`sub_model` is rewritten to <dest>/sub (the shipped copy it was trained on), nothing else.
"""

import dataclasses
import os

from cdgan_tf import cli  # First: keeps TensorFlow's logs quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf.models import generator_files

flags.DEFINE_string("run", None, "Folder with sub/ and super/ training model_dirs.")
flags.DEFINE_string("dest", None, "Weights folder to write (sub/ and super/).")
flags.mark_flags_as_required(["run", "dest"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  for role in ("sub", "super"):
    source = os.path.join(FLAGS.run, role)
    model, info = generator_files.load_generator(source)
    if info is None:
      raise cli.UsageError(f"--run: {source} has no generator.json")
    if info.sub_model:
      info = dataclasses.replace(info, sub_model=os.path.join(FLAGS.dest, "sub"))
    print(generator_files.save_generator(model, info, os.path.join(FLAGS.dest, role)), info)


if __name__ == "__main__":
  cli.run(main)
