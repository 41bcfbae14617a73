"""Image file helpers: the header size without decoding."""

import numpy as np
from PIL import Image
import pytest

from cdgan_tf.data import image_files


def test_header_size_reads_height_and_width_without_decoding(tmp_path):
  path = tmp_path / "a.png"
  Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(path)
  assert image_files.header_size(str(path)) == (5, 7)  # (height, width), not PIL's (w, h).
  (tmp_path / "b.png").write_text("not an image")
  with pytest.raises(image_files.ImageError, match="cannot read the image header"):
    image_files.header_size(str(tmp_path / "b.png"))
