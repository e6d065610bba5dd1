"""Karpathy-split caption sets: read and check the JSON, and put its images in place.

Every captioning data script writes the same layout::

    <dest>/dataset_<name>.json   {"dataset": "<name>", "images": [{"filename": ..., "filepath": ...,
                                  "split": "train|val|test|restval", "sentences": [{"raw": ..., "tokens": [...]}]}]}
    <dest>/images/<filepath>/<filename>

:func:`prepare` builds it for a published set (Flickr8k, COCO): the JSON comes out of Karpathy's
``caption_datasets.zip`` and each image out of the archive that holds it. Each file is taken, in
order, from ``--source DIR`` (a zip, or a folder it was unpacked to), from
``$SEQ2SEQ_DATA_MIRROR/<name>/<file>``, from a download already in ``<dest>``, or from the web.
Archives found locally are read where they lie (COCO's are 13 GB and 6 GB), never copied.

Zip members are looked up by file name and written to paths built from the JSON, never to the
member's own path, and the JSON's names must be plain relative paths, so no archive can write
outside ``images/``. Every file lands under a temporary name first and is then renamed, so an
interrupted run leaves no partial file, and a rerun only fetches what is still missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from data_scripts.fetch import MIRROR_ENV, DataError, fetch, mirror_path

SPLITS = ("train", "restval", "val", "test")  # "restval" is Karpathy's extra training images (COCO)
KARPATHY_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
KARPATHY_ARCHIVE = "caption_datasets.zip"
IMAGES_FOLDER = "images"
_CHUNK_BYTES = 1 << 20
_DIGEST_LENGTHS = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class Checksum:
    """An expected digest of a file: ``algorithm`` is "md5" or "sha256", ``hexdigest`` in lower case."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """``md5:HEX`` or ``sha256:HEX``; plain 64-digit ``HEX`` is a sha256."""
        algorithm, _, digest = text.rpartition(":")
        algorithm = algorithm.lower() or "sha256"
        if _DIGEST_LENGTHS.get(algorithm) != len(digest) or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ValueError(f"expected sha256:HEX (64 hex digits) or md5:HEX (32 hex digits), got {text!r}")
        return cls(algorithm, digest.lower())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class Archive:
    """A published zip file, the checksum its publisher (or a well-used copy of it) states, and the
    names of the folders it unpacks to (so that an unpacked copy under ``--source`` serves as well)."""

    url: str
    checksum: Checksum | None = None
    folders: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        """The archive's file name, the last part of its address."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CaptionSet:
    """What :func:`prepare` needs to know about one published caption set."""

    name: str  # "flickr8k": the JSON is dataset_<name>.json inside caption_datasets.zip
    image_archives: dict[str, Archive]  # the JSON's "filepath" ("" when it has none) -> the zip of those images
    split_sizes: dict[str, int]  # images per split in the published JSON: the structural check


@dataclass(frozen=True)
class SplitCount:
    """How many images and reference sentences one split holds."""

    images: int
    sentences: int


def json_name(name: str) -> str:
    """``dataset_<name>.json``, the file name Karpathy's archive and every loader use."""
    return f"dataset_{name}.json"


# --- the JSON -------------------------------------------------------------------------------------


def parse_dataset(data: bytes, origin: str) -> dict:
    """Decode and check a Karpathy JSON; ``origin`` names it in error messages.

    Raises:
        DataError: not JSON, or an image entry lacks a field the loaders need or has a bad value.
    """
    try:
        dataset = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{origin} is not a JSON file ({error}): delete it and run this script again.") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise DataError(f'{origin} has no "images" list: it is not a Karpathy caption-split file.')
    for number, image in enumerate(dataset["images"]):
        problem = _image_problem(image)
        if problem:
            raise DataError(f"{origin}: image entry {number} {problem}. Fix the file or fetch it again.")
    return dataset


def _image_problem(image: object) -> str | None:
    """What is wrong with one entry of ``images`` (None when nothing is)."""
    if not isinstance(image, dict):
        return "is not an object"
    for field in ("filename", "split", "sentences"):
        if field not in image:
            return f'has no "{field}"'
    if image["split"] not in SPLITS:
        return f"has split {image['split']!r}; expected one of {', '.join(SPLITS)}"
    sentences = image["sentences"]
    if not isinstance(sentences, list) or not sentences:
        return 'has no reference sentences ("sentences" must be a non-empty list)'
    for sentence in sentences:
        if not isinstance(sentence, dict) or not isinstance(sentence.get("raw"), str):
            return 'has a sentence without a "raw" text'
        if not isinstance(sentence.get("tokens"), list):
            return 'has a sentence without a "tokens" list'
    try:
        image_path(image)
    except ValueError as error:
        return str(error)
    return None


def image_path(image: dict) -> PurePosixPath:
    """``filepath/filename`` of an image entry, relative to the images folder.

    Raises:
        ValueError: the name is empty, absolute, or steps out of the folder (``..``).
    """
    filename, filepath = image["filename"], image.get("filepath", "")
    if not isinstance(filename, str) or not isinstance(filepath, str):
        raise ValueError('has a "filename" or "filepath" that is not a string')
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ValueError(f"has filename {filename!r}; expected a plain file name")
    folder = PurePosixPath(filepath)
    if folder.is_absolute() or "\\" in filepath or ".." in folder.parts:
        raise ValueError(f"has filepath {filepath!r}; expected a relative folder inside the images folder")
    return folder / filename


def split_counts(dataset: dict) -> dict[str, SplitCount]:
    """Images and sentences per split, in :data:`SPLITS` order, for the splits that occur."""
    counts = {}
    for split in SPLITS:
        images = [image for image in dataset["images"] if image["split"] == split]
        if images:
            counts[split] = SplitCount(len(images), sum(len(image["sentences"]) for image in images))
    return counts


def format_counts(counts: dict[str, SplitCount]) -> str:
    """``train 6,000 images / 30,000 sentences, val ...`` for the summary line."""
    return ", ".join(f"{split} {c.images:,} images / {c.sentences:,} sentences" for split, c in counts.items())


def check_split_sizes(counts: dict[str, SplitCount], expected: dict[str, int], origin: str) -> None:
    """Raise DataError unless every split holds exactly the published number of images."""
    found = {split: count.images for split, count in counts.items()}
    if found != expected:
        raise DataError(
            f"{origin} has {_sizes(found)} images, but the published split has {_sizes(expected)}: "
            "it is a different or damaged version. Delete it and run this script again, "
            "or point --source at the original caption_datasets.zip."
        )


def _sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{split} {size:,}" for split, size in sizes.items()) or "no"


def missing_images(dataset: dict, images_root: Path) -> list[PurePosixPath]:
    """The JSON's images that are not files under ``images_root``."""
    paths = (image_path(image) for image in dataset["images"])
    return [path for path in paths if not (images_root / path).is_file()]


# --- files --------------------------------------------------------------------------------------------


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest (``md5`` or ``sha256``) of the file at ``path``."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, checksum: Checksum | None) -> None:
    """Raise DataError unless the file at ``path`` has ``checksum`` (no check when it is None)."""
    if checksum is None:
        return
    got = file_digest(path, checksum.algorithm)
    if got != checksum.hexdigest:
        raise DataError(
            f"checksum mismatch for {path}: expected {checksum}, got {checksum.algorithm}:{got}. "
            "The file is corrupt, truncated or a different version: fetch it again, point --source at a "
            f"correct copy, or pass --checksum {path.name}={checksum.algorithm}:{got} to accept this one."
        )


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path} is not a readable zip file ({error}): delete it and fetch it again.") from None


def _regular_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's regular files by file name; macOS resource forks and links are left out."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = PurePosixPath(info.filename.replace("\\", "/"))
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if info.is_dir() or is_link or "__MACOSX" in name.parts or name.name.startswith("._"):
            continue
        members.setdefault(name.name, info)
    return members


def read_member(zip_path: Path, filename: str) -> bytes:
    """The bytes of the file called ``filename`` (in any folder) inside ``zip_path``."""
    with _open_zip(zip_path) as archive:
        info = _regular_members(archive).get(filename)
        if info is None:
            raise DataError(
                f"{zip_path} holds no {filename}: it is not the expected archive. "
                "Fetch it again, or point --source at the original."
            )
        return archive.read(info)


def extract_images(zip_path: Path, wanted: dict[str, Path]) -> int:
    """Write each member named by a key of ``wanted`` to its value; return how many were found.

    Members the archive lacks are skipped (the caller reports what is still missing).
    """
    with _open_zip(zip_path) as archive:
        members = _regular_members(archive)
        found = [(members[name], dest) for name, dest in wanted.items() if name in members]
        for info, dest in tqdm(found, desc=zip_path.name, unit="image", disable=not found):
            try:
                _place_file(dest, partial(_copy_member, archive, info))
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                raise DataError(
                    f"{info.filename} in {zip_path} cannot be unpacked ({error}): the archive is damaged. "
                    "Delete it and fetch it again; the images already unpacked are kept."
                ) from None
    return len(found)


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, part: Path) -> None:
    with archive.open(info) as stream, open(part, "wb") as out:
        shutil.copyfileobj(stream, out, _CHUNK_BYTES)


def copy_images(folder: Path, wanted: dict[str, Path]) -> int:
    """Hard-link (or copy, across file systems) ``folder/<name>`` to ``wanted[name]``; return how many existed."""
    found = [(folder / name, dest) for name, dest in wanted.items() if (folder / name).is_file()]
    for source, dest in tqdm(found, desc=folder.name, unit="image", disable=not found):
        _place_file(dest, partial(_link_or_copy, source))
    return len(found)


def _link_or_copy(source: Path, part: Path) -> None:
    try:
        os.link(source, part)
    except OSError:
        shutil.copyfile(source, part)


def _place_file(dest: Path, write: Callable[[Path], object]) -> None:
    """Let ``write(part)`` fill a temporary file beside ``dest``, then rename it to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    try:
        write(part)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


# --- locating the published files ----------------------------------------------------------------------


def locate_archive(
    caption_set: str, archive: Archive, dest_dir: Path, source: Path | None, checksum: Checksum | None
) -> Path:
    """The path of ``archive``, verified: the ``--source`` copy, the mirror's, a download in ``dest_dir``.

    Raises:
        DataError: ``source`` lacks the file, the download failed, or the checksum differs.
    """
    if source is not None:
        local = source / archive.filename
        if not local.is_file():
            raise DataError(
                f"--source {source} holds no {archive.filename}"
                + (f" (nor an unpacked {' or '.join(archive.folders)}/ folder)" if archive.folders else "")
                + f". Put it there, or leave out --source to download it from {archive.url}."
            )
        verify(local, checksum)
        return local
    subpath = f"{caption_set}/{archive.filename}"
    mirrored = mirror_path(subpath)
    if mirrored is not None and mirrored.is_file():
        print(f"{caption_set}: reading {mirrored} (from ${MIRROR_ENV})")
        verify(mirrored, checksum)
        return mirrored
    sha256 = checksum.hexdigest if checksum is not None and checksum.algorithm == "sha256" else None
    downloaded = fetch(
        f"{caption_set} {archive.filename}", archive.url, sha256, dest_dir / archive.filename, None, subpath
    )
    try:
        verify(downloaded, checksum)
    except DataError:
        downloaded.unlink()  # our own download: a rerun fetches it afresh
        raise
    return downloaded


def unpacked_folder(archive: Archive, source: Path | None) -> Path | None:
    """The folder under ``source`` that ``archive`` was unpacked to, if there is one."""
    if source is None:
        return None
    for folder in archive.folders:
        if (source / folder).is_dir():
            return source / folder
    return None


def dataset_json(caption_set: CaptionSet, dest_dir: Path, source: Path | None, checksums: dict[str, Checksum]) -> bytes:
    """The bytes of ``dataset_<name>.json``: from ``source`` as is, or out of caption_datasets.zip."""
    name = json_name(caption_set.name)
    if source is not None and (source / name).is_file():
        return (source / name).read_bytes()
    if source is not None and not (source / KARPATHY_ARCHIVE).is_file():
        raise DataError(
            f"--source {source} holds neither {name} nor {KARPATHY_ARCHIVE}. Put one of them there, "
            f"or leave out --source to download {KARPATHY_URL}."
        )
    karpathy = Archive(KARPATHY_URL)
    zip_path = locate_archive(caption_set.name, karpathy, dest_dir, source, checksums.get(KARPATHY_ARCHIVE))
    return read_member(zip_path, name)


def prepare(
    caption_set: CaptionSet, dest_dir: Path, source: Path | None = None, checksums: dict[str, Checksum] | None = None
) -> dict[str, SplitCount]:
    """Put ``dataset_<name>.json`` and every image it lists in ``dest_dir``; return the split counts.

    ``checksums`` maps an archive's file name to a checksum that replaces the pinned one.

    Raises:
        DataError: a file cannot be found or fetched, fails its check, or images are still missing.
    """
    if source is not None and not source.is_dir():
        raise DataError(f"--source must be a folder holding the archives or their unpacked folders; {source} is not")
    overrides = checksums or {}
    json_path = dest_dir / json_name(caption_set.name)
    if json_path.is_file():
        dataset = parse_dataset(json_path.read_bytes(), str(json_path))
        check_split_sizes(split_counts(dataset), caption_set.split_sizes, str(json_path))
    else:
        data = dataset_json(caption_set, dest_dir, source, overrides)
        dataset = parse_dataset(data, json_path.name)
        check_split_sizes(split_counts(dataset), caption_set.split_sizes, json_path.name)
        write_atomically(json_path, data)
    images_root = dest_dir / IMAGES_FOLDER
    missing: dict[Path, list[PurePosixPath]] = {}  # where the images were looked for -> those not there
    for filepath, paths in _by_filepath(caption_set, dataset["images"]).items():
        wanted = {path.name: images_root / path for path in paths if not (images_root / path).is_file()}
        if not wanted:
            continue
        archive = caption_set.image_archives[filepath]
        checksum = overrides.get(archive.filename, archive.checksum)
        origin = _fill(caption_set.name, archive, wanted, dest_dir, source, checksum)
        still_missing = [path for path in paths if not (images_root / path).is_file()]
        if still_missing:
            missing[origin] = still_missing
    if missing:
        raise _incomplete(caption_set, len(dataset["images"]), missing, images_root)
    return split_counts(dataset)


def _by_filepath(caption_set: CaptionSet, images: Iterable[dict]) -> dict[str, list[PurePosixPath]]:
    """Image paths grouped by the archive that holds them; an unknown ``filepath`` is a DataError."""
    groups: dict[str, list[PurePosixPath]] = {filepath: [] for filepath in caption_set.image_archives}
    for image in images:
        filepath = image.get("filepath", "")
        if filepath not in groups:
            raise DataError(
                f"{json_name(caption_set.name)}: image {image['filename']} has filepath {filepath!r}, but "
                f"{caption_set.name} images come from {', '.join(map(repr, groups))}: the JSON belongs to another set."
            )
        groups[filepath].append(image_path(image))
    return groups


def _fill(
    caption_set: str,
    archive: Archive,
    wanted: dict[str, Path],
    dest_dir: Path,
    source: Path | None,
    checksum: Checksum | None,
) -> Path:
    """Place the ``wanted`` images from an unpacked folder under ``source`` or from the archive; return which."""
    folder = unpacked_folder(archive, source)
    if folder is not None:
        print(f"{caption_set}: {len(wanted):,} images from {folder}")
        copy_images(folder, wanted)
        return folder
    zip_path = locate_archive(caption_set, archive, dest_dir, source, checksum)
    print(f"{caption_set}: {len(wanted):,} images from {zip_path}")
    extract_images(zip_path, wanted)
    return zip_path


def _incomplete(
    caption_set: CaptionSet, total: int, missing: dict[Path, list[PurePosixPath]], images_root: Path
) -> DataError:
    """The error for images of the JSON that none of the places looked in holds."""
    count = sum(len(paths) for paths in missing.values())
    examples = ", ".join(str(path) for paths in missing.values() for path in paths[:3])
    return DataError(
        f"{count:,} of the {total:,} images that {json_name(caption_set.name)} lists are not in "
        f"{', '.join(map(str, missing))} (e.g. {examples}): the images come from an incomplete or different "
        f"release. Fetch the original archives (or point --source at them) and run this script again; the "
        f"{total - count:,} images already in {images_root} are kept."
    )


# --- the command line shared by the scripts ------------------------------------------------------------


def _checksum_arg(text: str) -> tuple[str, Checksum]:
    """argparse type: ``FILE=sha256:HEX``, ``FILE=md5:HEX`` or ``FILE=HEX`` (a sha256)."""
    filename, equals, value = text.partition("=")
    if not equals or not filename:
        raise argparse.ArgumentTypeError(f"expected FILE=sha256:HEX (e.g. {KARPATHY_ARCHIVE}=sha256:...), got {text!r}")
    try:
        return filename, Checksum.parse(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(caption_set: CaptionSet, default_dest: Path, argv: list[str] | None, usage: str) -> argparse.Namespace:
    """Read the command line of a caption-set script; ``usage`` is its module docstring."""
    archives = [KARPATHY_ARCHIVE] + [archive.filename for archive in caption_set.image_archives.values()]
    parser = argparse.ArgumentParser(description=usage.split("\n\n", 1)[0], epilog=f"Files: {', '.join(archives)}.")
    parser.add_argument(
        "--source",
        type=Path,
        help="a folder holding local copies of the zips (or the folders they unpack to, or the JSON itself)",
    )
    parser.add_argument(
        "--dest-dir",
        type=Path,
        default=default_dest,
        help=f"folder to write {json_name(caption_set.name)} and images/ into (default: {default_dest})",
    )
    parser.add_argument(
        "--checksum",
        type=_checksum_arg,
        action="append",
        default=[],
        metavar="FILE=sha256:HEX",
        help="expected checksum of one of the zips (md5:HEX also works); replaces a pinned one. Repeatable.",
    )
    args = parser.parse_args(argv)
    unknown = sorted({filename for filename, _ in args.checksum} - set(archives))
    if unknown:
        parser.error(f"--checksum names {', '.join(unknown)}, which is none of the files: {', '.join(archives)}")
    return args


def run(caption_set: CaptionSet, default_dest: Path, argv: list[str] | None, usage: str) -> int:
    """The whole script for ``caption_set``: prepare it and print the counts; 2 on a data error."""
    args = parse_args(caption_set, default_dest, argv, usage)
    try:
        counts = prepare(caption_set, args.dest_dir, args.source, dict(args.checksum))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images = sum(count.images for count in counts.values())
    json_path = args.dest_dir / json_name(caption_set.name)
    print(f"{caption_set.name}: {json_path} and all {images:,} of its images in {args.dest_dir / IMAGES_FOLDER}")
    print(f"  {format_counts(counts)}")
    return 0
