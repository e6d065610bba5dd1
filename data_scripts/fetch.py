"""Get one data file into place: from a local copy, a mirror folder, or the web, then verify it.

Every data script goes through :func:`fetch`, so the order of sources and the error messages
are the same for all data sets:

1. ``source`` — a local copy the user points at with ``--source PATH``;
2. ``$SEQ2SEQ_DATA_MIRROR/<mirror_subpath>`` — a folder laid out like the mirror, for
   machines without internet;
3. the destination itself, when it is already there and verifies;
4. a download of ``url``.

The file is written to a temporary file beside the destination, checked against its
sha256 (when one is given), and only then renamed into place, so the destination never holds
a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

MIRROR_ENV = "SEQ2SEQ_DATA_MIRROR"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "seq2seq-data-scripts/0.1 (+python urllib)"


class DataError(RuntimeError):
    """A data file could not be found, fetched or verified; the message says what to do."""


def sha256_of(path: Path) -> str:
    """Return the hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_path(mirror_subpath: str | None) -> Path | None:
    """Return ``$SEQ2SEQ_DATA_MIRROR/<mirror_subpath>``, or None when the variable is unset."""
    mirror = os.environ.get(MIRROR_ENV, "")
    if not mirror or mirror_subpath is None:
        return None
    return Path(mirror) / mirror_subpath


def fetch(
    name: str,
    url: str,
    sha256: str | None,
    dest: Path,
    source: Path | None = None,
    mirror_subpath: str | None = None,
) -> Path:
    """Place the data file ``name`` at ``dest`` and return ``dest``.

    Tries, in order: the local file ``source``; the mirror folder named by
    ``$SEQ2SEQ_DATA_MIRROR`` (file ``mirror_subpath`` inside it); an existing ``dest`` that
    verifies; a download of ``url``. When ``sha256`` is given the result must match it.

    Raises:
        DataError: ``source`` is missing, the download failed, or the checksum differs.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        source = Path(source)
        if not source.is_file():
            raise DataError(
                f"{name}: --source file not found: {source}. "
                "Pass the path of an existing local copy, or leave out --source to download it."
            )
        print(f"{name}: copying {source}")
        _place(dest, lambda part: shutil.copyfile(source, part), str(source), sha256)
        return dest
    mirrored = mirror_path(mirror_subpath)
    if mirrored is not None and mirrored.is_file():
        print(f"{name}: copying {mirrored} (from ${MIRROR_ENV})")
        _place(dest, lambda part: shutil.copyfile(mirrored, part), str(mirrored), sha256)
        return dest
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256.lower()):
        print(f"{name}: already present at {dest}")
        return dest
    print(f"{name}: downloading {url}")
    _place(dest, lambda part: _download(name, url, part, mirror_subpath), url, sha256)
    return dest


def _place(dest: Path, write: Callable[[Path], object], origin: str, sha256: str | None) -> None:
    """Let ``write`` fill a temporary file beside ``dest``, verify it, then rename it to ``dest``."""
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")  # same folder: the rename is atomic
    try:
        write(part)
        if sha256 is not None:
            _verify(part, sha256, origin, dest)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _verify(path: Path, sha256: str, origin: str, dest: Path) -> None:
    """Raise DataError unless the file at ``path`` (fetched from ``origin``) has digest ``sha256``."""
    got = sha256_of(path)
    if got != sha256.lower():
        raise DataError(
            f"checksum mismatch for {origin}: expected sha256 {sha256.lower()}, got {got}. "
            f"{dest} was left unchanged. The file is corrupt, truncated or a different version: "
            "fetch it again, or point --source at a correct copy."
        )


def _download(name: str, url: str, part: Path, mirror_subpath: str | None) -> None:
    """Stream ``url`` into ``part`` with a progress bar; turn network failures into DataError."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with (
                open(part, "wb") as out,
                tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=total is None
                ) as progress,
            ):
                for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                    out.write(chunk)
                    progress.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DataError(
            f"{name}: the server answered HTTP {err.code} ({err.reason}) for {url}. "
            f"Check the address (or the options that build it). {_alternatives(mirror_subpath)}"
        ) from err
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"{name}: could not download {url} ({reason}); this machine seems to be offline. "
            f"{_alternatives(mirror_subpath)}"
        ) from err


def _alternatives(mirror_subpath: str | None) -> str:
    """Describe the two ways to supply a file without the network."""
    subpath = mirror_subpath or "the file"
    hint = (
        "Without the network: pass --source PATH to a local copy, "
        f"or set {MIRROR_ENV}=DIR to a folder that holds {subpath}."
    )
    mirrored = mirror_path(mirror_subpath)
    if mirrored is not None:
        hint += f" ({MIRROR_ENV} is set, but {mirrored} does not exist.)"
    return hint
