"""Deprecated name of `python -m tfrecords_builder.transfer_set` (same flags).

`evaluate.py --attack` names threat models; the transfer-set generator got a name of
its own, and its attack algorithm flag is --algorithm. This module only forwards.
"""

import runpy
import sys

if __name__ == "__main__":
  print("note: python -m tfrecords_builder.attack is deprecated, use "
        "python -m tfrecords_builder.transfer_set", file=sys.stderr)
  runpy.run_module("tfrecords_builder.transfer_set", run_name="__main__", alter_sys=True)
