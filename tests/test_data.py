"""Data sources, the decode cache, clear errors when data is missing, and device-side batches."""

import tarfile
import urllib.error

import pytest
import torch
from PIL import Image

from lrstudy import data as data_mod
from lrstudy.data import BatchStream, DataUnavailable, Normalizer, describe_source, load_data, random_crop


def write_png(img, path):
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)


def make_tree(root, name="tinyset", classes=("cat", "dog"), per_class=(3, 2), size=8):
    tree = root / name
    g = torch.Generator().manual_seed(0)
    for split, n in zip(("train", "test"), per_class):
        for c in classes:
            (tree / split / c).mkdir(parents=True)
            for i in range(n):
                img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
                write_png(img, str(tree / split / c / f"{i:04d}.png"))
    return tree


def test_synthetic_has_cifar_shapes():
    d = load_data("synthetic")
    assert d.train_x.shape[1:] == (3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.num_classes == 10 and d.id == "synthetic"
    assert d.fingerprint == load_data("synthetic").fingerprint


def test_folder_tree_is_decoded_once_then_cached(scratch, monkeypatch):
    tree = make_tree(scratch)
    d = load_data(tree)
    assert d.train_x.shape == (6, 3, 8, 8) and d.test_x.shape == (4, 3, 8, 8)
    assert d.classes == ["cat", "dog"] and d.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.id == "folder:tinyset" and "tinyset" in d.name
    monkeypatch.setattr(data_mod, "_decode_tree", lambda *a: pytest.fail("decoded twice"))
    assert torch.equal(load_data(tree).train_x, d.train_x)


def test_archive_is_unpacked_into_the_data_root(scratch):
    tree = make_tree(scratch / "src", name="cifar10-jpeg")
    archive = scratch / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    d = load_data(archive)
    digest = __import__("hashlib").sha256(archive.read_bytes()).hexdigest()
    assert (scratch / "data" / "unpacked" / f"cifar10-jpeg-{digest[:16]}" / "cifar10-jpeg" / "train" / "cat").is_dir()
    # the known name, but not the known images: never called the CIFAR-10 JPEG copy
    assert d.id == "cifar10-jpeg" and d.name.startswith("folder-per-class tree 'cifar10-jpeg' (not the CIFAR-10")
    assert describe_source(archive) == ("cifar10-jpeg", "CIFAR-10 (JPEG q75 copy)")


def test_missing_path_names_both_remedies(scratch):
    with pytest.raises(DataUnavailable) as err:
        load_data(scratch / "nowhere")
    assert "DATA=" in str(err.value) and "download" in str(err.value)
    assert not (scratch / "data" / "cache").exists()


def test_offline_cifar_download_fails_clearly(scratch, monkeypatch):
    import torchvision

    class Offline:
        url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

        def __init__(self, root, train, download):
            if download:
                raise urllib.error.URLError("no network")
            raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    # the host answers the connection probe; the download itself then fails (test_environments
    # covers a host that does not answer)
    monkeypatch.setattr("lrstudy.data._reachable", lambda url, timeout: None)
    with pytest.raises(DataUnavailable) as err:
        load_data("cifar10")
    message = str(err.value)
    assert "could not be downloaded" in message and "DATA=" in message and "no network" in message
    assert not (scratch / "data" / "cache").exists()


def test_tree_with_mixed_sizes_is_refused(scratch):
    tree = make_tree(scratch)
    write_png(torch.zeros(3, 9, 9, dtype=torch.uint8), str(tree / "train" / "dog" / "odd.png"))
    with pytest.raises(DataUnavailable, match="odd.png"):
        load_data(tree)


def test_batches_cover_each_epoch_once_in_a_seeded_order():
    d = load_data("synthetic")
    norm = Normalizer("mean_image", d, torch.device("cpu"))
    a = BatchStream(d, 100, seed=3, normalize=norm)
    labels = torch.cat([next(a)[1] for _ in range(a.batches_per_epoch)])
    assert torch.equal(labels.sort().values, d.train_y.sort().values)
    b = BatchStream(d, 100, seed=3, normalize=norm)
    assert torch.equal(next(b)[0], BatchStream(d, 100, seed=3, normalize=norm).__next__()[0])
    assert not torch.equal(next(BatchStream(d, 100, seed=4, normalize=norm))[1], next(BatchStream(d, 100, seed=3, normalize=norm))[1])
    x, _ = next(b)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert abs(x.mean().item()) < 20  # mean image removed (0-255 scale, not rescaled)


def test_random_crop_and_flip_keep_shapes_and_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(random_crop(x, 0, "zeros", g), x)
    out = random_crop(x, 2, "reflect", g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    d = load_data("synthetic")
    s = BatchStream(d, 50, seed=0, normalize=Normalizer("mean_image", d, torch.device("cpu")), flip=True, crop=4)
    assert next(s)[0].shape == (50, 3, 32, 32)
