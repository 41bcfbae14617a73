r"""Copies a trained sub + super run into a weights folder through generator_files.

  python experiments/generalization/ship.py --run=/work/scratch/mixtrain/s2 \
      --dest=weights/cifar10/cdgan_mix_scale2

Reads <run>/{sub,super} (generator.keras + generator.json) and writes <dest>/{sub,super}/
through `experiments.actions.ship_generators` (the runner's ship stage: byte copies, and a
chained super generator's `sub_model` rewritten to <dest>/sub, nothing else).
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from experiments import actions

flags.DEFINE_string("run", None, "Folder with sub/ and super/ training model_dirs.")
flags.DEFINE_string("dest", None, "Weights folder to write (sub/ and super/).")
flags.mark_flags_as_required(["run", "dest"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  actions.ship_generators(FLAGS.run, FLAGS.dest)


if __name__ == "__main__":
  cli.run(main)
