"""The Controller on its own: chunks, cadences, actions and callbacks, with a fake step.

Every dependency is handed in (orbit's Controller), so a stand-in step that only counts
checks the loop's bookkeeping exactly, in milliseconds.
"""

import pytest
import tensorflow as tf

from cdgan_tf.training import actions as actions_lib
from cdgan_tf.training import controller as controller_lib


class FakeStep:
  """What the controller uses of a GanStep: a counter, train(n), metrics, batch size."""
  global_batch_size = 2
  learning_rate = 0.5

  def __init__(self):
    self.step = tf.Variable(0, dtype=tf.int64)
    self.chunks = []

  def train(self, num_steps):
    self.chunks.append(int(num_steps))
    self.step.assign_add(num_steps)

  def take_metrics(self):
    return {"generator_total": float(self.step.numpy())}


class Recorder(actions_lib.Callback):
  """Logs each hook with the step it is told and (begin / trained) the step's counter."""

  def __init__(self, log, step):
    self.log, self.step = log, step

  def on_train_begin(self, step_number):
    self.log.append(("begin", step_number))

  def on_chunk_begin(self, step_number, num_steps):
    self.log.append(("chunk", step_number, num_steps, int(self.step.step.numpy())))

  def on_chunk_trained(self, step_number):
    self.log.append(("trained", step_number, int(self.step.step.numpy())))

  def on_chunk_end(self, step_number):
    self.log.append(("end", step_number))


def _controller(tmp_path, step, actions=(), callbacks=()):
  checkpoint = tf.train.Checkpoint(step=step.step)
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / "checkpoints"),
                                       max_to_keep=10, step_counter=step.step)
  return controller_lib.Controller(
      step=step, checkpoint_manager=manager, summary_dir=str(tmp_path / "train"),
      steps_per_loop=4, summary_every=5, checkpoint_every=6, actions=actions,
      callbacks=callbacks), manager


def test_chunks_end_on_every_cadence_and_actions_run_on_theirs(tmp_path):
  step, ran = FakeStep(), []
  every7 = actions_lib.FunctionAction(lambda n: ran.append(("every7", n)), every=7)
  at_end = actions_lib.FunctionAction(lambda n: ran.append(("end", n)), at_end=True)
  both = actions_lib.FunctionAction(lambda n: ran.append(("both", n)), every=7, at_end=True)
  controller, manager = _controller(tmp_path, step, [every7, at_end, both])
  assert controller.train(14) == 14
  # Boundaries: steps_per_loop 4, summaries 5, checkpoints 6, the action's 7, the end.
  # 0 -> 4 -> 5 -> 6 -> 7 -> 10 -> 12 -> 14
  assert step.chunks == [4, 1, 1, 1, 3, 2, 2]
  # `both` ran at 14 on its cadence, so not again at the end.
  assert ran == [("every7", 7), ("both", 7), ("every7", 14), ("both", 14), ("end", 14)]
  # Checkpoints on multiples of 6, and the last step.
  assert [int(p.rsplit("-", 1)[1]) for p in manager.checkpoints] == [6, 12, 14]


def test_callbacks_see_each_chunk_before_and_after_its_bookkeeping(tmp_path):
  step, log = FakeStep(), []
  marker = actions_lib.FunctionAction(lambda n: log.append(("action", n)), every=5)
  controller, _ = _controller(tmp_path, step, [marker], [Recorder(log, step)])
  controller.train(5)
  # The counter: not yet moved at chunk begin, moved when the chunk is reported trained.
  assert log == [("begin", 0), ("chunk", 0, 4, 0), ("trained", 4, 4), ("end", 4),
                 ("chunk", 4, 1, 4), ("trained", 5, 5), ("action", 5), ("end", 5)]


def test_training_resumes_from_the_counter_it_is_given(tmp_path):
  step = FakeStep()
  step.step.assign(5)
  controller, manager = _controller(tmp_path, step)
  controller.train(8)
  assert step.chunks == [1, 2]  # 5 -> 6 (checkpoint) -> 8
  assert [int(p.rsplit("-", 1)[1]) for p in manager.checkpoints] == [6, 8]
  assert controller.train(8) == 8 and step.chunks == [1, 2]  # Nothing left to do.


def test_bad_cadence_is_refused(tmp_path):
  step = FakeStep()
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step.step),
                                       str(tmp_path), max_to_keep=1)
  with pytest.raises(ValueError, match="steps_per_loop must be at least 1, got 0"):
    controller_lib.Controller(step=step, checkpoint_manager=manager, summary_dir="",
                              steps_per_loop=0, summary_every=1, checkpoint_every=1)
