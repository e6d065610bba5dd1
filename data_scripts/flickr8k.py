"""Get Flickr8k (8,000 photos, five captions each) with Karpathy's train/val/test split.

Usage (from the project root)::

    python data_scripts/flickr8k.py                           # download (about 1.1 GB)
    python data_scripts/flickr8k.py --source DIR              # DIR holds the zips, or their unpacked folders
    SEQ2SEQ_DATA_MIRROR=DIR python data_scripts/flickr8k.py   # read DIR/flickr8k/<zip>

Two files are needed: ``Flickr8k_Dataset.zip`` (the photos, from the widely used copy in the
jbrownlee/Datasets releases; it unpacks to ``Flicker8k_Dataset/``) and Karpathy's
``caption_datasets.zip`` (its ``dataset_flickr8k.json`` holds the split and the tokenised
captions). ``--source DIR`` may hold either zip, an unpacked ``Flicker8k_Dataset/`` folder, or
``dataset_flickr8k.json`` itself.

The result is ``data/flickr8k/dataset_flickr8k.json`` (as published) and the 8,000 photos it
lists in ``data/flickr8k/images/`` (the archive's other photos, about 90, are left out). The
photo archive is checked against the md5 that widely used download scripts pin for it;
Karpathy's archive has no published checksum, so it is checked structurally: 6,000 / 1,000 /
1,000 images per split, each with its photo. ``--checksum FILE=sha256:HEX`` pins or replaces a checksum.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``data_scripts`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_scripts.karpathy import Archive, CaptionSet, Checksum, run

FLICKR8K = CaptionSet(
    name="flickr8k",
    image_archives={
        "": Archive(
            "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
            Checksum("md5", "f18a1e2920de5bd84dae7cf08ec78978"),
            folders=("Flicker8k_Dataset", "Flickr8k_Dataset"),
        )
    },
    split_sizes={"train": 6_000, "val": 1_000, "test": 1_000},
)
DEFAULT_DEST_DIR = Path("data/flickr8k")


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the process exit status (2 on a data error)."""
    return run(FLICKR8K, DEFAULT_DEST_DIR, argv, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
