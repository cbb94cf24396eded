"""Point ops (FPS, kNN, grouping, Chamfer, ...) behind one front door: :mod:`extensions.ops`."""
