"""ShapeNet-55 (pre-training) from ``ShapeNet55-34/shapenet_pc/<synset>-<model>.npy`` and the split lists.

Layout below the data root (reference/protocols.md 1.1): ``ShapeNet55-34/shapenet_pc/*.npy`` (one (P, 3) array
per shape, P = 8192 officially) and ``ShapeNet55-34/ShapeNet-55/{train,test}.txt`` (one file name per line).

- ``label`` is the index of the shape's synset in :data:`SYNSETS`, the sorted list of the 55 official synset
  ids (so ``02691156`` airplane is 0 and ``04554684`` washer is 54), whatever subset is present.
- ``whole=True`` makes the train split test lines + train lines (ReCon, PCP, MaDi, PQAE default); Point-MAE
  pre-trains without it (the default here).
- ``id`` is the npy file stem (``02691156-1a04e3eab45ca15dd86060f189eb133``).
- Raw points are returned, read lazily per item. The reference's random 1024-point subset and ``pc_norm`` are
  the transforms ``random_subset`` and ``normalize_unit_sphere``, configured by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import PointCloudDataset, Sample, check_points, read_lines
from bench.errors import DataError
from bench.registry import DATASETS

#: the 55 ShapeNetCore synsets of ShapeNet-55, sorted by id (label = position), with their names
SYNSET_NAMES: dict[str, str] = {
    "02691156": "airplane", "02747177": "trash bin", "02773838": "bag", "02801938": "basket",
    "02808440": "bathtub", "02818832": "bed", "02828884": "bench", "02843684": "birdhouse",
    "02871439": "bookshelf", "02876657": "bottle", "02880940": "bowl", "02924116": "bus",
    "02933112": "cabinet", "02942699": "camera", "02946921": "can", "02954340": "cap", "02958343": "car",
    "02992529": "cellphone", "03001627": "chair", "03046257": "clock", "03085013": "keyboard",
    "03207941": "dishwasher", "03211117": "display", "03261776": "earphone", "03325088": "faucet",
    "03337140": "file cabinet", "03467517": "guitar", "03513137": "helmet", "03593526": "jar",
    "03624134": "knife", "03636649": "lamp", "03642806": "laptop", "03691459": "loudspeaker",
    "03710193": "mailbox", "03759954": "microphone", "03761084": "microwaves", "03790512": "motorbike",
    "03797390": "mug", "03928116": "piano", "03938244": "pillow", "03948459": "pistol", "03991062": "flowerpot",
    "04004475": "printer", "04074963": "remote", "04090263": "rifle", "04099429": "rocket",
    "04225987": "skateboard", "04256520": "sofa", "04330267": "stove", "04379243": "table",
    "04401088": "telephone", "04460130": "tower", "04468005": "train", "04530566": "watercraft",
    "04554684": "washer",
}  # fmt: skip
SYNSETS: list[str] = sorted(SYNSET_NAMES)
FOLDER = Path("ShapeNet55-34")


def list_path(root: Path, split: str) -> Path:
    return Path(root) / FOLDER / "ShapeNet-55" / f"{split}.txt"


def points_dir(root: Path) -> Path:
    return Path(root) / FOLDER / "shapenet_pc"


@DATASETS.register("shapenet55")
class ShapeNet55(PointCloudDataset):
    """ShapeNet-55 complete shapes; label = synset index in the sorted 55-synset list. Option ``whole``."""

    name = "shapenet55"
    source = ("Point-BERT's DATASET.md, https://github.com/lulutang0608/Point-BERT (shapenet_pc/*.npy and the "
              "ShapeNet-55 split lists)")
    class_names: ClassVar[list[str]] = [SYNSET_NAMES[s] for s in SYNSETS]
    option_defaults: ClassVar[dict[str, Any]] = {"whole": False}

    def __init__(self, root: Path, split: str, variant: str = "default", **options: Any) -> None:
        super().__init__(root, split, variant, **options)
        lines = read_lines(list_path(self.root, split))
        if split == "train" and self.options["whole"]:
            lines = read_lines(list_path(self.root, "test")) + lines
        self.files = lines
        self.labels = np.array([self._label(name) for name in lines], dtype=np.int64)

    def _label(self, file_name: str) -> int:
        synset = file_name.split("-", 1)[0]
        if synset not in SYNSET_NAMES or not file_name.endswith(".npy"):
            raise DataError(
                f"{list_path(self.root, self.split)}: line {file_name!r} is not '<synset>-<model>.npy' with one of "
                "the 55 ShapeNet-55 synset ids."
            )
        return SYNSETS.index(synset)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Sample:
        i = self._check_index(i)
        path = points_dir(self.root) / self.files[i]
        if not path.is_file():
            raise DataError(f"ShapeNet-55 point file not found: expected {path} (listed in the {self.split} list).")
        try:
            points = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc}).") from None
        return {"xyz": check_points(points, path)[:, :3], "label": np.asarray(self.labels[i], dtype=np.int64),
                "id": self.sample_id(i)}

    def sample_id(self, i: int) -> str:
        """The npy file stem, ``<synset>-<model>``."""
        return Path(self.files[self._check_index(i)]).stem

    @classmethod
    def expected_files(cls, root: Path, variant: str = "default") -> list[Path]:
        return [list_path(root, s) for s in cls.splits] + [points_dir(root)]

    @classmethod
    def light_check(cls, root: Path, variant: str = "default") -> tuple[list[str], dict[str, int | None]]:
        problems, counts = [], {}
        for split in cls.splits:
            lines = read_lines(list_path(root, split))
            counts[split] = len(lines)
            absent = [n for n in lines if not (points_dir(root) / n).is_file()]
            if absent:
                problems.append(
                    f"{len(absent)} files listed in {list_path(root, split)} are missing, e.g. "
                    f"{points_dir(root) / absent[0]}"
                )
        return problems, counts
