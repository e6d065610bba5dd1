"""Get MS COCO 2014 captions (123,287 photos, about five captions each) with Karpathy's split.

Usage (from the project root)::

    python data_scripts/coco.py                           # download (about 19 GB)
    python data_scripts/coco.py --source DIR              # DIR holds the zips, or their unpacked folders
    SEQ2SEQ_DATA_MIRROR=DIR python data_scripts/coco.py   # read DIR/coco/<zip>

Three files are needed: ``train2014.zip`` and ``val2014.zip`` (the photos, from the COCO
site) and Karpathy's ``caption_datasets.zip`` (its ``dataset_coco.json`` holds the split and
the tokenised captions). ``--source DIR`` may hold the zips, unpacked ``train2014/`` and
``val2014/`` folders, or ``dataset_coco.json`` itself.

The result is ``data/coco/dataset_coco.json`` (as published) and the photos in
``data/coco/images/train2014/`` and ``data/coco/images/val2014/`` (the JSON's ``filepath``).
Karpathy's split takes 5,000 validation and 5,000 test photos out of val2014; the other 30,504
are "restval", which training uses along with train2014's 82,783. The photo archives are checked
against the md5s that widely used download scripts pin for them; Karpathy's archive has no published checksum, so it is
checked structurally: the image count of every split, each with its photo.
``--checksum FILE=sha256:HEX`` pins or replaces a checksum.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.karpathy import Archive, CaptionSet, Checksum, run

COCO = CaptionSet(
    name="coco",
    image_archives={
        "train2014": Archive(
            "http://images.cocodataset.org/zips/train2014.zip",
            Checksum("md5", "0da8c0bd3d6becc4dcb32757491aca88"),
            folders=("train2014",),
        ),
        "val2014": Archive(
            "http://images.cocodataset.org/zips/val2014.zip",
            Checksum("md5", "a3d79f5ed8d289b7a7554ce06a5782b3"),
            folders=("val2014",),
        ),
    },
    split_sizes={"train": 82_783, "restval": 30_504, "val": 5_000, "test": 5_000},
)
DEFAULT_DEST_DIR = Path("data/coco")


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    return run(COCO, DEFAULT_DEST_DIR, argv, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
