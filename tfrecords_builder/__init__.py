"""python -m tfrecords_builder: paired image folders -> sharded TFRecords + manifest.json.

The library part is `tfrecords_builder.builder.build`; `__main__` only parses flags.
"""
