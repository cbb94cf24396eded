"""Procedural, learnable stand-in data written in the official on-disk formats (see :mod:`.writers`), and the
side-data file writer (:mod:`.side`)."""

from bench.data.synthetic.side import write_side_data
from bench.data.synthetic.writers import SIZES, write_standin

__all__ = ["SIZES", "write_side_data", "write_standin"]
