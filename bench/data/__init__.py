"""Datasets, transforms and the synthetic stand-in.

Every public module here is imported by :func:`bench.registry.load_plugins`, which fills ``DATASETS`` and
``TRANSFORMS``. Data sets live below one data root in their official on-disk layouts (DESIGN.md section 5).
"""
