"""Folder-per-class image trees (what ``torchvision.datasets.ImageFolder`` reads) and archives of
them: unpacked safely, scanned with every problem named, decoded into uint8 tensors.

A tree is ``<root>/train/<class>/<image>`` and ``<root>/test/<class>/<image>``. Its identity is its
content: the SHA-256 of every image file's bytes (about 1.5 s for CIFAR-10's 60,000 JPEGs on one
core), so an image edited in place is a new tree. An archive's identity is the SHA-256 of the
archive file; it is unpacked once per content into ``<data root>/unpacked/<name>-<hash>/``, a folder
this module creates, marks and alone ever removes.

Hidden files that tools leave behind (``._*`` macOS resource forks, ``.DS_Store``, ``Thumbs.db``)
are skipped and counted; anything else that is not an image we can decode stops the load with a
message naming the file.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import torch

from .files import file_lock

__all__ = ["DataUnavailable", "ARCHIVE_SUFFIXES", "IMAGE_SUFFIXES", "tree_name", "sha256_file", "unpack",
           "tree_root", "scan", "content_key", "decode"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar")
SKIPPED_NAMES = {"Thumbs.db", "desktop.ini"}  # (and every name starting with a dot)
# PIL modes of 8 bits per channel; "I;16", "I" and "F" would be clipped to 255 by convert("RGB")
EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}
UNPACKED_MARK = ".lrstudy-unpacked"  # in a folder this module unpacked: the archive's SHA-256
STAGING_MARK = ".lrstudy-staging"  # in a folder an unpack is still writing


class DataUnavailable(RuntimeError):
    """The requested data cannot be found, fetched or read; the message says what and how to fix it."""


def tree_name(path: Path) -> str:
    """A tree's or archive's name without the archive suffix (``cifar10-jpeg.tar.xz`` -> ``cifar10-jpeg``)."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(archive: Path, into: Path, digest: str | None = None) -> Path:
    """Unpack ``archive`` under ``into/unpacked/`` once per archive content (``digest``: its SHA-256,
    if already known); return the folder.

    Safe against concurrent callers (one lock per archive content: the first unpacks into a private
    temporary folder and renames it into place, the others wait and use its result) and against
    interruption (a killed unpack leaves only a marked temporary folder, removed by the next
    caller). Nothing outside ``into/unpacked/`` is ever written or removed.
    """
    if not archive.name.endswith(ARCHIVE_SUFFIXES):
        raise DataUnavailable(f"{archive} is a file but not a .tar, .tar.xz, .tar.gz or .tgz archive")
    stem = tree_name(archive)
    if not stem.strip("."):
        raise DataUnavailable(f"{archive}: the archive's name has nothing before its suffix; "
                              "name it after its data set (e.g. cifar10-jpeg.tar.xz)")
    digest = digest or sha256_file(archive)
    base = into / "unpacked"
    target = base / f"{stem}-{digest[:16]}"
    if _unpacked(target, digest):
        return target
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base / f".{digest[:16]}.lock", f"{archive.name} is being unpacked by another process; waiting"):
        if _unpacked(target, digest):  # another process did it while we waited
            return target
        if target.exists():
            raise DataUnavailable(f"{target} exists but was not unpacked by lrstudy; move it away and try again")
        for leftover in base.glob(f".unpack-{digest[:16]}-*"):  # a killed earlier unpack of this archive
            if (leftover / STAGING_MARK).is_file():
                shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".unpack-{digest[:16]}-", dir=base))
        try:
            os.chmod(staging, 0o755)  # (mkdtemp makes it private; the unpacked tree is ordinary data)
            (staging / STAGING_MARK).write_text(digest)
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(staging, filter="data")
            except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError) as err:
                raise DataUnavailable(f"{archive}: cannot be unpacked as a .tar archive "
                                      f"({type(err).__name__}: {err})") from None
            (staging / UNPACKED_MARK).write_text(digest)
            (staging / STAGING_MARK).unlink()
            os.rename(staging, target)  # atomic: readers see no folder or a complete one
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _unpacked(target: Path, digest: str) -> bool:
    try:
        return (target / UNPACKED_MARK).read_text() == digest
    except OSError:
        return False


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        raise DataUnavailable(f"{folder}: cannot be listed ({err.strerror or err})") from None


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; a link that leads nowhere or in a loop is an error naming it."""
    try:
        return path.stat().st_mode & 0o170000 == 0o040000
    except OSError as err:
        raise DataUnavailable(f"{path}: a broken or looping link ({err.strerror or err})") from None


def _skipped(path: Path) -> bool:
    return path.name.startswith(".") or path.name in SKIPPED_NAMES


def tree_root(path: Path) -> Path:
    """The folder holding ``train/`` and ``test/``: ``path`` itself or exactly one folder inside it."""
    def has_splits(p: Path) -> bool:
        return (p / "train").is_dir() and (p / "test").is_dir()

    if has_splits(path):
        return path
    found = [p for p in _entries(path) if not _skipped(p) and _is_dir(p) and has_splits(p)]
    if len(found) > 1:
        raise DataUnavailable(f"{path} holds {len(found)} data trees ({', '.join(p.name for p in found)}); "
                              "point at one of them")
    if not found:
        raise DataUnavailable(f"{path} has no train/ and test/ subfolders (nor a folder that has them)")
    return found[0]


def scan(tree: Path) -> tuple[dict[str, list[tuple[str, Path]]], int]:
    """``({split: [(class, file), ...]}, skipped)``: every image of both splits in a fixed order,
    and how many hidden files were skipped. Refuses, naming the culprit: splits that are one
    folder, unreadable folders, broken links, files that are not images, empty classes, and
    class folders that differ between the splits."""
    train, test = tree / "train", tree / "test"
    if train.resolve() == test.resolve():
        raise DataUnavailable(f"{tree}: train/ and test/ are the same folder; a test split must hold other images")
    splits, skipped = {}, 0
    for split in ("train", "test"):
        classes = [p for p in _entries(tree / split) if not _skipped(p) and _is_dir(p)]
        if not classes:
            raise DataUnavailable(f"{tree / split} has no class subfolders")
        files = []
        for folder in classes:
            images = []
            for f in _entries(folder):
                if _skipped(f):
                    skipped += 1
                elif _is_dir(f) or f.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataUnavailable(f"{f}: not an image file (the study reads "
                                          f"{', '.join(sorted(IMAGE_SUFFIXES))} in each class folder)")
                else:
                    images.append((folder.name, f))
            if not images:
                raise DataUnavailable(f"{folder} holds no images")
            files += images
        splits[split] = files
    train_classes = {c for c, _ in splits["train"]}
    test_classes = {c for c, _ in splits["test"]}
    if train_classes != test_classes:
        only_train, only_test = sorted(train_classes - test_classes), sorted(test_classes - train_classes)
        raise DataUnavailable(f"{tree}: train/ and test/ have different class folders "
                              f"(only in train/: {only_train or 'none'}; only in test/: {only_test or 'none'})")
    return splits, skipped


def content_key(tree: Path, splits: dict[str, list[tuple[str, Path]]]) -> str:
    """SHA-256 over every image's place in the tree and bytes: which files a decode would read."""
    h = hashlib.sha256()
    for split, files in splits.items():
        for cls, f in files:
            h.update(f"{split}/{cls}/{f.name}\n".encode())
            try:
                h.update(hashlib.sha256(f.read_bytes()).digest())
            except OSError as err:
                raise DataUnavailable(f"{f}: cannot be read ({err.strerror or err})") from None
    return h.hexdigest()


GRAY_MODES = {"1", "L", "LA"}


def _decode_image(path: Path, gray: bool | None) -> torch.Tensor:
    """One image as a uint8 ``C x H x W`` tensor: one channel if ``gray`` (None: as this image is),
    else RGB."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in EIGHT_BIT_MODES:
                raise DataUnavailable(f"{path}: {im.mode} pixels (16-bit or floating point); the study reads "
                                      "8-bit images: convert it (e.g. to 8-bit PNG)")
            im.load()  # reads every byte: a truncated file fails here, not later
            if gray is None:
                gray = im.mode in GRAY_MODES
            pixels = np.array(im.convert("L" if gray else "RGB"))
            return torch.from_numpy(pixels[:, :, None] if gray else pixels).permute(2, 0, 1)
    except DataUnavailable:
        raise
    except Exception as err:  # PIL's errors for broken files are OSError, SyntaxError, ValueError, ...
        raise DataUnavailable(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from None


def decode(splits: dict[str, list[tuple[str, Path]]]) -> dict:
    """The scanned images as ``{train_x, train_y, test_x, test_y, classes}`` (uint8, N x C x H x W:
    one channel if the first image is grayscale, as MNIST's are, else three); every image must have
    the first one's size."""
    classes = sorted({cls for cls, _ in splits["train"]})
    index = {c: i for i, c in enumerate(classes)}
    out: dict = {"classes": classes}
    shape = gray = None
    for split, files in splits.items():
        images = []
        for _, f in files:
            img = _decode_image(f, gray)
            if shape is None:
                shape, gray = img.shape, img.shape[0] == 1
            elif img.shape != shape:
                raise DataUnavailable(f"{f}: image of shape {tuple(img.shape)}, expected {tuple(shape)} "
                                      "like the others; resize the tree to one size first")
            images.append(img)
        out[f"{split}_x"] = torch.stack(images)
        out[f"{split}_y"] = torch.tensor([index[c] for c, _ in files], dtype=torch.int64)
    return out
