"""Image data: loaded once into uint8 tensors, then batched on the training device.

Sources (the ``data`` parameter of every notebook, ``DATA=`` for make):

* ``"cifar10"``, ``"cifar100"``, ``"mnist"`` -- ``torchvision.datasets`` (downloaded into ``data/``
  on first use);
* a folder-per-class tree with ``train/`` and ``test/`` subfolders (what ``ImageFolder`` reads),
  or a ``.tar.xz``/``.tar.gz``/``.tgz``/``.tar`` archive of one, unpacked into ``data/`` once;
* ``"synthetic"``, ``"synthetic-cifar100"``, ``"synthetic-mnist"`` -- random class templates in the
  shapes of CIFAR-10, CIFAR-100 and MNIST, for the smoke profile.

Decoded images are cached in ``data/cache/`` as uint8 tensors, so a source is decoded once.
Training batches never go through a per-sample ``DataLoader``: the whole split sits on the device
and each epoch is one shuffle (and, where a paper uses it, one batched crop/flip) of that tensor.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import torch

from .files import atomic_write
from .folders import DataUnavailable, content_key, decode, scan, sha256_file, tree_name, tree_root, unpack
from .paths import data_root

__all__ = ["DataUnavailable", "DataSource", "ImageData", "load_data", "BatchStream", "describe_source",
           "source_fingerprint", "to_device", "is_local", "public_source", "download_problem", "missing_message"]

# Folder trees we can name exactly, with the fingerprint of their images (which a tree of that name
# must match to be called so). The JPEG copy is lossy: results on it must say so.
KNOWN_TREES = {"cifar10-jpeg": ("CIFAR-10 (JPEG q75 copy)", "eec90e10bd2f5438")}
TORCHVISION_SETS = {"cifar10": ("CIFAR10", "CIFAR-10"), "cifar100": ("CIFAR100", "CIFAR-100"), "mnist": ("MNIST", "MNIST")}
# What the study's networks for each data set take (channels, height, width), how many classes it
# has, and its (training, test) image counts
DATASET_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "mnist": (1, 28, 28)}
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10}
DATASET_SPLITS = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "mnist": (60_000, 10_000)}
# Stand-ins for the smoke profile, in the shapes of the real sets: (classes, channels, side).
SYNTHETIC = {"synthetic": (10, 3, 32), "synthetic-cifar100": (100, 3, 32), "synthetic-mnist": (10, 1, 28)}


@dataclass
class ImageData:
    """A train/test split as uint8 tensors ``N x C x H x W`` with int64 labels."""

    id: str  # stable short name, part of a run's identity ("cifar10", "cifar10-jpeg", ...)
    name: str  # what results must call it ("CIFAR-10 (JPEG q75 copy)")
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    _fingerprint: str | None = field(default=None, repr=False)  # known already (from the cache)
    properties: dict = field(default_factory=dict)  # facts about the set, recorded with each run
    _on_device: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of all pixels and labels: which bytes were trained on."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for t in (self.train_x, self.train_y, self.test_x, self.test_y):
                h.update(t.contiguous().cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def shared_images(self) -> int:
        """How many test images have exactly the pixels of some training image (CIFAR-10 itself
        has a few): a property of the data set that results on it should state."""
        seen = {hashlib.blake2b(img.numpy().tobytes(), digest_size=16).digest() for img in self.train_x}
        return sum(hashlib.blake2b(img.numpy().tobytes(), digest_size=16).digest() in seen for img in self.test_x)

    def mean_image(self) -> torch.Tensor:
        """Per-pixel mean of the training images (0-255 scale), as Caffe's ``compute_image_mean``."""
        return self.train_x.double().mean(0).float()

    def subset(self, train: int | None = None, test: int | None = None) -> "ImageData":
        """The first ``train`` training and ``test`` test images (None: all) of fixed, class-balanced
        shuffles -- the same images for every run and seed, so runs on them stay paired."""
        train_x, train_y = _balanced(self.train_x, self.train_y, train, self.num_classes, "train_subset")
        test_x, test_y = _balanced(self.test_x, self.test_y, test, self.num_classes, "test_subset")
        return ImageData(self.id, self.name, train_x, train_y, test_x, test_y, self.classes,
                         properties=self.properties)

    def on(self, device: torch.device | str) -> "ImageData":
        """The same split with its tensors on ``device`` (copied once, then reused)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        if device not in self._on_device:
            self._on_device[device] = ImageData(
                self.id, self.name, *(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y)),
                self.classes, self._fingerprint, self.properties,
            )
        return self._on_device[device]

    def describe(self) -> dict:
        return {
            "data_id": self.id,
            "data_name": self.name,
            "data_fingerprint": self.fingerprint,
            "train_examples": len(self.train_y),
            "test_examples": len(self.test_y),
            "classes": self.num_classes,
            **self.properties,
        }


def _balanced(x: torch.Tensor, y: torch.Tensor, n: int | None, classes: int, what: str):
    if n is None:
        return x, y
    if not 0 < n <= len(y):
        raise ValueError(f"{what}={n} must be between 1 and the split's size {len(y)}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    labels = y[order]
    rank = torch.zeros_like(labels)  # each image's position among its class in the shuffle
    for c in range(classes):
        mask = labels == c
        rank[mask] = torch.arange(int(mask.sum()))
    chosen = order[torch.sort(rank * classes + labels, stable=True).indices[:n]].sort().values
    return x[chosen], y[chosen]


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def describe_source(source: str | os.PathLike | None) -> tuple[str, str]:
    """``(id, name)`` of a data source without loading it. The id is part of a run's identity; the
    content is checked separately, against the fingerprint each stored run records."""
    source = _default_source(source)
    if source in SYNTHETIC:
        classes, channels, side = SYNTHETIC[source]
        return source, f"synthetic (random class templates, {classes} classes, {channels}x{side}x{side})"
    if source in TORCHVISION_SETS:
        return source, TORCHVISION_SETS[source][1]
    stem = tree_name(Path(source))
    if stem in KNOWN_TREES:
        return stem, KNOWN_TREES[stem][0]
    return f"folder:{stem}", f"folder-per-class tree '{stem}'"


def public_source(source: str) -> str:
    """A data source as recorded: a name as given, a path by its last component only (where the
    files lay on one machine says nothing about what they were, and may be private)."""
    return Path(source).name if ("/" in source or "\\" in source) else source


@dataclass(frozen=True)
class DataSource:
    """A data source (a notebook's ``data`` parameter) classified once, before anything is loaded:
    settings hold these, and nothing after them looks at the source's text again."""

    source: str  # as given: a set's name, or a path on this machine (private: see ``name``)
    id: str  # part of a run's identity: "cifar10", "cifar10-jpeg", "folder:<stem>"
    label: str  # what results must call it: "CIFAR-10 (JPEG q75 copy)"
    kind: str  # "synthetic", "torchvision" or "path"

    @classmethod
    def of(cls, source: str | os.PathLike | None) -> DataSource:
        source = _default_source(source)
        data_id, label = describe_source(source)
        kind = "synthetic" if source in SYNTHETIC else "torchvision" if source in TORCHVISION_SETS else "path"
        return cls(source, data_id, label, kind)

    @property
    def name(self) -> str:
        """The source as recorded: a name as given, a path by its last component only (where the
        files lay on one machine says nothing about what they were, and may be private)."""
        return public_source(self.source)

    @property
    def local(self) -> bool:
        """Whether it loads without a download (asked each time: a download or a copy may bring it)."""
        return is_local(self.source)

    @cached_property
    def fingerprint(self) -> str | None:
        """:func:`source_fingerprint`, found once (a tree never decoded is hashed to answer)."""
        return source_fingerprint(self.source)


TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "mnist": "MNIST"}


def is_local(source: str | os.PathLike | None) -> bool:
    """Whether a source can be loaded without a download: synthetic, a path that exists, or a
    torchvision set already in the data folder (or its decoded cache)."""
    source = _default_source(source)
    if source in SYNTHETIC:
        return True
    if source in TORCHVISION_SETS:
        root = data_root()
        return (root / TORCHVISION_FOLDERS[source]).exists() or (root / "cache" / f"{source}.pt").exists()
    return Path(source).expanduser().exists()


def source_fingerprint(source: str | os.PathLike | None) -> str | None:
    """The fingerprint of a source's images if they are on this machine, else None (nothing is
    downloaded to answer). Read from the decode cache's small index file when the source was
    decoded before (an archive is hashed, a tree's files are hashed: no pixels are loaded)."""
    source = _default_source(source)
    if not is_local(source):
        data_id = describe_source(source)[0]
        if data_id in KNOWN_TREES and source == data_id:  # a data set we know, named by its label alone:
            return KNOWN_TREES[data_id][1]                 # its images are known, whoever names them
        return None
    if source in SYNTHETIC:
        return load_data(source).fingerprint
    key, _ = _cache_key(source, download=False)
    try:
        return json.loads(_cache_path(key).with_suffix(".json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return load_data(source, download=False).fingerprint


def load_data(source: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """Load a data source (see the module docstring), decoding it only the first time."""
    source = _default_source(source)
    data_id, name = describe_source(source)
    if source in SYNTHETIC:
        classes, channels, side = SYNTHETIC[source]
        return synthetic(classes=classes, channels=channels, size=side, name=source)
    key, decode_blob = _cache_key(source, download)
    return _cached(data_id, key, decode_blob, name)


def _cache_key(source: str, download: bool):
    """``(key, decode)``: the name of a source's decoded images in the cache -- a hash of its content
    for a tree or an archive -- and the function that decodes them."""
    if source in TORCHVISION_SETS:  # (torchvision checks its files' MD5s when it reads them)
        return source, lambda: _torchvision(source, download)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataUnavailable(missing_message(f"the data path {str(path)!r} does not exist"))
    if path.is_file():  # an archive is known by its own bytes: nothing to unpack or scan for the key
        digest = sha256_file(path)
        return f"{tree_name(path)}-{digest[:16]}", lambda: _decode_tree(tree_root(unpack(path, data_root(), digest)))
    tree = tree_root(path)
    splits, skipped = scan(tree)
    return f"{tree.name}-{_tree_key(tree, splits)[:16]}", lambda: _decode_tree(tree, (splits, skipped))


def _tree_key(tree: Path, splits) -> str:
    """:func:`~lrstudy.folders.content_key` of a tree, hashed once per state of its files: a tree
    decoded before keeps its key in the cache under a digest of its path and every file's name,
    size, inode, modification and change times, so a tree no file of which changed is not read
    again (60,000 files: a listing instead of a hash of every byte). The change time is the
    kernel's (no tool sets it back), so an image rewritten in place at its old size and with its
    old modification time is still hashed again."""
    state = hashlib.sha256(str(tree.resolve()).encode())
    for split, files in splits.items():
        for cls, f in files:
            try:
                st = f.stat()
            except OSError as err:
                raise DataUnavailable(f"{f}: cannot be read ({err.strerror or err})") from None
            state.update(f"{split}/{cls}/{f.name} {st.st_size} {st.st_ino} {st.st_mtime_ns} {st.st_ctime_ns}\n".encode())
    memo = data_root() / "cache" / "trees" / f"{state.hexdigest()[:32]}.key"
    try:
        key = memo.read_text().strip()
        if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
            return key
    except OSError:
        pass
    key = content_key(tree, splits)
    if _cache_path(f"{tree.name}-{key[:16]}").exists():  # (only for a tree that decoded: bad data leaves nothing)
        atomic_write(memo, key.encode())
    return key


def check_shape(data: ImageData, dataset: str, source: str) -> None:
    """Refuse images of another size than the networks for ``dataset`` take, before any training
    (a 64x64 tree would otherwise fail deep inside a network with a shape error)."""
    expected, got = DATASET_SHAPES.get(dataset), tuple(data.train_x.shape[1:])
    if expected is not None and got != expected:
        size = lambda shape: "x".join(map(str, shape))  # noqa: E731
        raise DataUnavailable(f"{source}: its images are {size(got)} (channels x height x width); the study's "
                              f"{dataset} networks take {size(expected)}. Resize the images first.")


def _default_source(source) -> str:
    if source is None or str(source).strip() in ("", "None"):
        return "cifar10"
    return str(source)


def missing_message(reason: str) -> str:
    return (
        f"{reason}.\nProvide the images in one of two ways:\n"
        f"  1. with internet access, let torchvision download CIFAR into {data_root()} "
        "(data=\"cifar10\" / DATA=cifar10, the default);\n"
        "  2. point DATA= (notebook parameter `data`) at a folder-per-class tree with train/ and "
        "test/ subfolders, or at a .tar.xz of one -- e.g. DATA=../shared/data/cifar10-jpeg.tar.xz."
    )


DOWNLOAD_TIMEOUT_S = 10  # seconds to wait for a connection: a machine without internet fails fast


def _reachable(url: str, timeout: float) -> str | None:
    """Why ``url``'s host cannot be reached within ``timeout`` seconds -- name lookup included, which
    a socket timeout does not bound -- or None if a connection opens."""
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):  # the download would go through it
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        port = parsed.port or 80
    outcome: list = []

    def connect() -> None:
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{type(err).__name__}: {err}")

    worker = threading.Thread(target=connect, daemon=True)  # (a lookup that hangs is left behind)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no answer from {parsed.hostname} within {timeout:g} s"


def download_problem(source: str) -> str | None:
    """Why a source that is not on this machine cannot be downloaded now (a path that does not
    exist; a torchvision set whose host, or proxy, does not answer within seconds), or None."""
    source = _default_source(source)
    if source not in TORCHVISION_SETS:
        return f"the data path {source!r} does not exist" if not is_local(source) else None
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_SETS[source][0])
    url = getattr(cls, "url", None) or cls.mirrors[0]
    unreachable = _reachable(url, DOWNLOAD_TIMEOUT_S)
    return f"not in {data_root()}, and {url} cannot be reached ({unreachable})" if unreachable else None


def _torchvision(name: str, download: bool) -> dict:
    import socket

    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_SETS[name][0])
    root = data_root()
    splits = {}
    for train in (True, False):
        try:
            try:
                ds = cls(str(root), train=train, download=False)
            except RuntimeError:
                if not download:
                    raise
                # One bounded look at the network first: without it, each of a data set's files (and
                # each of MNIST's mirrors) would wait for its own timeout.
                url = getattr(cls, "url", None) or cls.mirrors[0]
                unreachable = _reachable(url, DOWNLOAD_TIMEOUT_S)
                if unreachable:
                    raise ConnectionError(f"cannot reach {url} ({unreachable})") from None
                previous = socket.getdefaulttimeout()
                socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
                try:
                    ds = cls(str(root), train=train, download=True)
                finally:
                    socket.setdefaulttimeout(previous)
        except Exception as err:  # no network, proxy, checksum failure, ...
            raise DataUnavailable(
                missing_message(f"{TORCHVISION_SETS[name][1]} is not in {root} and could not be "
                                 f"downloaded ({type(err).__name__}: {err})")
            ) from None
        x = torch.as_tensor(ds.data)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # MNIST is N x H x W, CIFAR N x H x W x C
        x = x.contiguous()
        splits["train" if train else "test"] = (x, torch.as_tensor(ds.targets, dtype=torch.int64))
    return {
        "train_x": splits["train"][0], "train_y": splits["train"][1],
        "test_x": splits["test"][0], "test_y": splits["test"][1], "classes": list(ds.classes),
    }


def _decode_tree(tree: Path, scanned=None) -> dict:
    splits, skipped = scanned or scan(tree)
    if skipped:
        print(f"{tree.name}: skipped {skipped} hidden files (._*, .DS_Store, Thumbs.db, ...)")
    return {**decode(splits), "properties": {"skipped_hidden_files": skipped}}


def _cache_path(key: str) -> Path:
    return data_root() / "cache" / f"{key}.pt"


def _cached(data_id: str, key: str, decode_blob, name: str) -> ImageData:
    """The decoded images under ``key`` in the cache (``key`` names the content: an archive's or a
    tree's hash), decoding and storing them the first time, with a small JSON index beside them
    (fingerprint and properties: what a check of a stored run reads without loading pixels)."""
    cache = _cache_path(key)
    blob = None
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            if not {"train_x", "train_y", "test_x", "test_y", "classes", "fingerprint"} <= set(blob):
                blob = None  # a cache of an older layout: decode again
        except Exception:  # a truncated or foreign cache file: decode again
            blob = None
    if blob is None:
        blob = decode_blob()
        images = ImageData(data_id, name, blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"],
                           list(blob["classes"]))
        blob["fingerprint"] = images.fingerprint
        blob["properties"] = {**blob.get("properties", {}), "test_images_in_train": images.shared_images()}
        buffer = io.BytesIO()
        torch.save(blob, buffer)
        atomic_write(cache, buffer.getvalue())
        index = {"fingerprint": blob["fingerprint"], "properties": blob["properties"]}
        atomic_write(cache.with_suffix(".json"), (json.dumps(index, sort_keys=True) + "\n").encode())
    known = KNOWN_TREES.get(data_id)
    if known and blob["fingerprint"] != known[1]:  # a tree by a known name, but other images
        name = f"folder-per-class tree '{data_id}' (not the {known[0]}: other images)"
    return ImageData(data_id, name, blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"],
                     list(blob["classes"]), _fingerprint=blob["fingerprint"], properties=dict(blob["properties"]))


def synthetic(train: int = 2000, test: int = 500, classes: int = 10, size: int = 32, seed: int = 0,
              channels: int = 3, name: str = "synthetic") -> ImageData:
    """Learnable stand-in data in a real set's shapes: each class is a smooth random template,
    each image its template plus pixel noise. For the smoke profile and the tests only."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(classes, channels, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        y = y[torch.randperm(n, generator=g)]
        x = 60 + 140 * templates[y] + 40 * torch.randn(n, channels, size, size, generator=g)
        return x.clamp(0, 255).round().to(torch.uint8), y

    train_x, train_y = split(train)
    test_x, test_y = split(test)
    data_id, label = describe_source(name)
    return ImageData(data_id, label, train_x, train_y, test_x, test_y, [f"class{i}" for i in range(classes)])


# ---------------------------------------------------------------------------------------------
# Batches on the device
# ---------------------------------------------------------------------------------------------


class Normalizer:
    """Turns uint8 images into the network's float input, on the device.

    * ``"mean_image"`` subtracts the per-pixel training mean from raw 0-255 values (Caffe's
      ``mean_file``, used by the CLR, SGDR and super-convergence CIFAR nets); nothing is rescaled.
    * ``"channel_stats"`` subtracts each channel's training mean and divides by its standard
      deviation (fb.resnet.torch's "meanstd", also used by Stochastic Depth and DenseNet code).
    * ``"mean_image_unit"`` does the same on values scaled to [0, 1] (SGDR's code: ``x / 255``
      minus the per-pixel mean).
    * ``"scale"`` multiplies raw values by 1/256 (Caffe's LeNet: ``scale: 0.00390625``).
    """

    KINDS = ("mean_image", "mean_image_unit", "channel_stats", "scale")

    def __init__(self, kind: str, data: ImageData, device: torch.device):
        if kind not in self.KINDS:
            raise ValueError(f"unknown normalisation {kind!r}; known: {list(self.KINDS)}")
        x = data.train_x
        if kind == "mean_image":
            self.shift, self.factor = data.mean_image().to(device), None
        elif kind == "mean_image_unit":
            self.shift, self.factor = data.mean_image().to(device), 1 / 255
        elif kind == "channel_stats":
            flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
            self.shift = flat.mean(1).float().view(1, -1, 1, 1).to(device)
            self.factor = (1 / flat.std(1)).float().view(1, -1, 1, 1).to(device)
        else:
            self.shift, self.factor = None, 0.00390625

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.shift is not None:
            x = x - self.shift
        if self.factor is not None:
            x = x * self.factor
        return x.contiguous(memory_format=torch.channels_last)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device`` without making the host wait: through pinned memory and an
    asynchronous copy on CUDA (a plain ``.to(cuda)`` from pageable memory synchronises)."""
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class BatchStream:
    """Endless training batches drawn on the device.

    Every epoch is one random permutation of the training set (from a CPU generator seeded by the
    run's seed, so the order is the same on every device); batches are consecutive slices of it and
    a final partial batch is dropped. Optional augmentation, drawn from the same generator:
    ``flip`` (horizontal, p=0.5) and ``crop`` (pad by ``crop`` pixels -- zeros or reflection --
    then take a random window of the original size).
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int,
        seed: int,
        normalize: Normalizer,
        flip: bool = False,
        crop: int = 0,
        pad_mode: str = "zeros",
    ):
        if batch_size > len(data.train_y):
            raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(data.train_y)})")
        self.data, self.batch_size, self.normalize = data, batch_size, normalize
        self.flip, self.crop, self.pad_mode = flip, crop, pad_mode
        self.generator = torch.Generator().manual_seed(seed)
        self.device = data.train_x.device
        self.epoch = -1
        self._x = self._y = None
        self._pos = 0
        self._epoch_start = self.generator.get_state()  # the generator as the current epoch began
        self.batches_per_epoch = len(data.train_y) // batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def state(self) -> dict:
        """Where the stream is, as plain data: enough to rebuild the current epoch exactly."""
        return {"epoch": self.epoch, "pos": self._pos, "epoch_start": self._epoch_start.clone()}

    def restore(self, state: dict) -> None:
        """Continue from ``state()``: the current epoch's order and augmentation are drawn again
        from the generator as it was when that epoch began."""
        self.generator.set_state(state["epoch_start"])
        if state["epoch"] < 0:
            self.epoch, self._x, self._y, self._pos = -1, None, None, 0
            return
        self.epoch = state["epoch"] - 1
        self._new_epoch()
        self._pos = state["pos"]

    def _new_epoch(self) -> None:
        self._epoch_start = self.generator.get_state()
        n = len(self.data.train_y)
        order = to_device(torch.randperm(n, generator=self.generator), self.device)
        x = self.data.train_x[order]
        if self.flip:
            flip = to_device(torch.rand(n, generator=self.generator) < 0.5, self.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.crop:
            x = random_crop(x, self.crop, self.pad_mode, self.generator)
        self._x, self._y = x, self.data.train_y[order]
        self._pos = 0
        self.epoch += 1

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._x is None or self._pos + self.batch_size > len(self._y):
            self._new_epoch()
        sl = slice(self._pos, self._pos + self.batch_size)
        self._pos += self.batch_size
        return self.normalize(self._x[sl]), self._y[sl]


def random_crop(x: torch.Tensor, pad: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """A random ``H x W`` window of each image padded by ``pad`` pixels, in one gather."""
    n, _, h, w = x.shape
    if mode == "zeros":
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    elif mode == "reflect":
        padded = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
    else:
        raise ValueError(f"pad_mode={mode!r}; allowed: 'zeros', 'reflect'")
    dy = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    dx = to_device(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # n x h x 1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # n x 1 x w
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # n x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()
