"""Procedural, learnable stand-in data written in the official on-disk formats (see :mod:`.writers`)."""

from bench.data.synthetic.writers import SIZES, write_standin

__all__ = ["SIZES", "write_standin"]
