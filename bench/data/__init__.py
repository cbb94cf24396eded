"""Datasets, transforms, side data, prepare steps and the synthetic stand-in.

Every public module here is imported by :func:`bench.registry.load_plugins`, which fills ``DATASETS``,
``TRANSFORMS``, ``SIDE_DATA``, ``PREPARERS`` and ``STANDIN_WRITERS``. Data sets live below one data root in their
official on-disk layouts (DESIGN.md section 5); every sample carries a stable ``id`` (see :mod:`bench.data.base`).
"""
