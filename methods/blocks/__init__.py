"""Building blocks shared by every Point-MAE-family method: grouping, patch embedding, transformer, masking,
heads and checkpoint loading. Parameter names follow the official releases so that authors' checkpoints load.
"""

from methods.blocks.encoder import EncoderConfig, PointEncoder
from methods.blocks.grouping import PatchGrouper
from methods.blocks.heads import ClassificationHead, PointClassifier
from methods.blocks.patch_embed import PatchEmbed
from methods.blocks.transformer import Attention, Block, DropPath, Mlp, TransformerDecoder, TransformerEncoder

__all__ = [
    "Attention",
    "Block",
    "ClassificationHead",
    "DropPath",
    "EncoderConfig",
    "Mlp",
    "PatchEmbed",
    "PatchGrouper",
    "PointClassifier",
    "PointEncoder",
    "TransformerDecoder",
    "TransformerEncoder",
]
