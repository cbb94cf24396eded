"""Metrics as classes with ``update`` / ``compute`` / ``reset`` (torchmetrics style), registered by name.

Streaming over batches equals computing once on everything; conventions are stated per class and pinned by tests.
"""
