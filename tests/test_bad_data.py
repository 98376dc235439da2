"""Data a user might really give, and the inputs around it: every case either loads correctly or is
refused with one message naming the file and the problem. In every case nothing outside the data
root changes, and no partial file or temporary folder is left behind."""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from lrstudy.__main__ import main
from lrstudy.config import parse_profile
from lrstudy.data import DataUnavailable, load_data
from lrstudy.experiments import EXPERIMENTS, clr_cifar10
from lrstudy.models import MODELS
from lrstudy.runqueue import run_in_order
from lrstudy.runs import OtherDataError, RunConfig, RunStore

ROOT = Path(__file__).resolve().parents[1]


def write_image(path, size=8, mode="RGB", seed=0):
    g = torch.Generator().manual_seed(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = torch.randint(0, 256, (size, size, channels), dtype=torch.uint8, generator=g).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels if channels == 3 else pixels[:, :, 0], mode).save(path)


def make_tree(root, classes=("cat", "dog"), per_class=(3, 2), size=8, suffix=".png", seed=0):
    # every image its own generator seed, the same on every run (Python's str hash is salted per process,
    # so two images could collide and make a test about shared images flaky)
    images = [(split, c, i) for split, n in zip(("train", "test"), per_class) for c in classes for i in range(n)]
    for k, (split, c, i) in enumerate(images):
        write_image(root / split / c / f"{i:04d}{suffix}", size, seed=seed * 1000 + k)
    return root


def archive_of(tree, path, arcname=None):
    with tarfile.open(path, "w:xz" if path.name.endswith(".xz") else "w:gz" if path.name.endswith("gz") else "w") as tar:
        tar.add(tree, arcname=arcname or tree.name)
    return path


def snapshot(folder):
    """Every file and folder below ``folder``: path -> content hash (or 'dir'/'link')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(folder):
    return [p for p in folder.rglob("*") if p.name.startswith((".unpack-", ".write-test-")) or ".tmp-" in p.name
            or p.suffix == ".partial"]


# --- each case builds its input in `tmp` and returns what to load ------------------------------


def truncated_jpeg(tmp):
    tree = make_tree(tmp / "tree", suffix=".jpg")
    victim = tree / "train" / "cat" / "0001.jpg"
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    return tree


def symlink_loop_file(tmp):
    tree = make_tree(tmp / "tree")
    os.symlink("loop.png", tree / "train" / "cat" / "loop.png")
    return tree


def symlink_loop_class(tmp):
    tree = make_tree(tmp / "tree")
    os.symlink("bird", tree / "train" / "bird")
    return tree


def text_as_targz(tmp):
    tmp.mkdir(parents=True)
    path = tmp / "notes.tar.gz"
    path.write_text("these are my notes, not an archive\n")
    return path


def truncated_tarxz(tmp):
    path = archive_of(make_tree(tmp / "src" / "set"), tmp / "set.tar.xz")
    path.write_bytes(path.read_bytes()[:200])
    return path


def images_of_another_size(tmp):
    return make_tree(tmp / "tree", size=64)


def sixteen_bit_png(tmp):
    tree = make_tree(tmp / "tree")
    pixels = (torch.arange(64, dtype=torch.int32).reshape(8, 8) * 1000).numpy().astype("uint16")
    Image.fromarray(pixels).save(tree / "test" / "dog" / "0000.png")
    return tree


def tif_test_images(tmp):
    tree = make_tree(tmp / "tree")
    for f in (tree / "test").rglob("*.png"):
        Image.open(f).save(f.with_suffix(".tif"))
        f.unlink()
    return tree


def a_stray_file(tmp):
    tree = make_tree(tmp / "tree")
    (tree / "train" / "dog" / "labels.csv").write_text("a,b\n")
    return tree


def class_folders_differ(tmp):
    tree = make_tree(tmp / "tree")
    write_image(tree / "train" / "bird" / "0000.png")
    write_image(tree / "test" / "frog" / "0000.png")
    return tree


def an_empty_class(tmp):
    tree = make_tree(tmp / "tree")
    (tree / "train" / "bird").mkdir()
    (tree / "test" / "bird").mkdir()
    return tree


def two_trees(tmp):
    make_tree(tmp / "both" / "first")
    make_tree(tmp / "both" / "second")
    return tmp / "both"


def splits_linked(tmp):
    tree = make_tree(tmp / "tree")
    import shutil

    shutil.rmtree(tree / "test")
    os.symlink("train", tree / "test")
    return tree


def unnamed_archive(tmp):
    return archive_of(make_tree(tmp / "src" / "set"), tmp / ".tar.xz")


def dotdot_archive(tmp):
    return archive_of(make_tree(tmp / "src" / "set"), tmp / "...tar.xz")


REFUSED = [
    (truncated_jpeg, "0001.jpg: cannot be read as an image"),
    (symlink_loop_file, "loop.png: a broken or looping link"),
    (symlink_loop_class, "bird: a broken or looping link"),
    (text_as_targz, "notes.tar.gz: cannot be unpacked as a .tar archive"),
    (truncated_tarxz, "set.tar.xz: cannot be unpacked as a .tar archive"),
    (sixteen_bit_png, "0000.png: I;16 pixels"),
    (a_stray_file, "labels.csv: not an image file"),
    (class_folders_differ, "only in train/: ['bird']; only in test/: ['frog']"),
    (an_empty_class, "bird holds no images"),
    (two_trees, "holds 2 data trees (first, second)"),
    (splits_linked, "train/ and test/ are the same folder"),
    (unnamed_archive, ".tar.xz: the archive's name has nothing before its suffix"),
    (dotdot_archive, "...tar.xz: the archive's name has nothing before its suffix"),
]


@pytest.mark.parametrize("build, message", REFUSED, ids=[b.__name__ for b, _ in REFUSED])
def test_bad_data_is_refused_by_name_and_nothing_else_changes(scratch, build, message):
    source = build(scratch / "input")
    before = snapshot(scratch)
    with pytest.raises(DataUnavailable) as err:
        load_data(source)
    assert message in str(err.value)
    after = snapshot(scratch)
    outside = {k for k in set(before) ^ set(after) if not k.startswith("data")}
    assert not outside and all(before[k] == after[k] for k in before if k in after), "changed outside the data root"
    assert not leftovers(scratch)
    assert not (scratch / "data" / "cache").exists() or not any((scratch / "data" / "cache").iterdir())


def test_an_unreadable_folder_is_named(scratch, monkeypatch):
    """(Simulated: the tests run as root, whom file permissions do not stop.)"""
    tree = make_tree(scratch / "tree")
    real = Path.iterdir

    def iterdir(self):
        if self == tree / "train" / "dog":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(DataUnavailable, match="dog: cannot be listed \\(Permission denied\\)"):
        load_data(tree)


def test_hidden_files_are_skipped_and_counted(scratch):
    tree = make_tree(scratch / "tree")
    (tree / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tree / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tree / "test" / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    d = load_data(tree)
    assert len(d.train_y) == 6 and d.properties["skipped_hidden_files"] == 2


def test_tif_images_are_read(scratch):
    d = load_data(tif_test_images(scratch))
    assert d.test_x.shape == (4, 3, 8, 8)


def test_grayscale_trees_keep_one_channel(scratch):
    tree = scratch / "gray"
    for split in ("train", "test"):
        for c in ("0", "1"):
            write_image(tree / split / c / "a.png", 28, mode="L")
    assert load_data(tree).train_x.shape == (2, 1, 28, 28)


def test_images_of_another_size_are_refused_before_training(scratch):
    source = images_of_another_size(scratch)
    settings = clr_cifar10.EXPERIMENT.settings("smoke", data=str(source))
    with pytest.raises(DataUnavailable, match="its images are 3x64x64.*take 3x32x32"):
        run_in_order(settings, clr_cifar10.EXPERIMENT.run_configs(settings)[:1], progress=False)
    assert not (scratch / "results" / "smoke" / "runs").exists() or not any((scratch / "results" / "smoke" / "runs").iterdir())


def test_the_splits_share_no_folder_but_shared_images_are_counted(scratch):
    tree = make_tree(scratch / "tree")
    (tree / "test" / "cat" / "0000.png").write_bytes((tree / "train" / "cat" / "0000.png").read_bytes())
    d = load_data(tree)
    assert d.describe()["test_images_in_train"] == 1


def test_an_image_edited_in_place_is_decoded_again(scratch):
    tree = make_tree(scratch / "tree", suffix=".bmp")  # (uncompressed: an edit keeps the file's size)
    first = load_data(tree)
    victim = tree / "train" / "cat" / "0000.bmp"
    size, stat = victim.stat().st_size, victim.stat()
    write_image(victim, seed=99)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same name, size and time: only the bytes differ
    assert victim.stat().st_size == size
    second = load_data(tree)
    assert second.fingerprint != first.fingerprint
    assert not torch.equal(second.train_x[0], first.train_x[0])


def test_a_new_archive_of_the_same_name_is_unpacked_again(scratch):
    archive = archive_of(make_tree(scratch / "a" / "set"), scratch / "set.tar.gz")
    first = load_data(archive)
    archive_of(make_tree(scratch / "b" / "set", seed=7), archive)
    second = load_data(archive)
    assert first.fingerprint != second.fingerprint
    assert len(list((scratch / "data" / "unpacked").glob("set-*"))) == 2


def test_unpacking_never_removes_what_it_did_not_make(scratch):
    archive = archive_of(make_tree(scratch / "a" / "set"), scratch / "set.tar.gz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    unpacked = scratch / "data" / "unpacked"
    stale = unpacked / f".unpack-{digest[:16]}-killed"  # a killed earlier unpack: marked, so removed
    (stale / "set").mkdir(parents=True)
    (stale / ".lrstudy-staging").write_text(digest)
    foreign = unpacked / f".unpack-{digest[:16]}-not-ours"  # same pattern, no mark: left alone
    foreign.mkdir()
    load_data(archive)
    assert not stale.exists() and foreign.exists()
    squatter = scratch / "other.tar.gz"
    archive_of(make_tree(scratch / "c" / "set", seed=3), squatter)
    other = hashlib.sha256(squatter.read_bytes()).hexdigest()
    (unpacked / f"other-{other[:16]}").mkdir()
    (unpacked / f"other-{other[:16]}" / "mine.txt").write_text("a user's file")
    with pytest.raises(DataUnavailable, match="was not unpacked by lrstudy"):
        load_data(squatter)
    assert (unpacked / f"other-{other[:16]}" / "mine.txt").read_text() == "a user's file"


UNPACK_CHILD = textwrap.dedent("""
    import sys
    from lrstudy.data import load_data
    d = load_data(sys.argv[1])
    print("LOADED", d.fingerprint, len(d.train_y), flush=True)
""")


def child_env(scratch):
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LRSTUDY_DATA_ROOT": str(scratch / "data")}


@pytest.mark.parametrize("name", [".tar.xz", "...tar.xz"])
def test_an_archive_name_cannot_delete_anything_in_a_real_process(tmp_path, name):
    """What used to remove the data folder (".tar.xz") or the folder above it ("...tar.xz")."""
    (tmp_path / "data" / "cache").mkdir(parents=True)
    (tmp_path / "data" / "cache" / "other-set.pt").write_bytes(b"another data set's cache")
    (tmp_path / "project-file.txt").write_text("the checkout")
    archive = archive_of(make_tree(tmp_path / "src" / "set"), tmp_path / "data" / name)
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-c", UNPACK_CHILD, str(archive)], capture_output=True, text=True,
                            env=child_env(tmp_path), timeout=120)
    assert result.returncode != 0 and "nothing before its suffix" in result.stderr
    assert snapshot(tmp_path) == before


def test_concurrent_processes_unpack_an_archive_once(tmp_path):
    archive = archive_of(make_tree(tmp_path / "src" / "cifar10-jpeg", per_class=(40, 10)), tmp_path / "set.tar.xz")
    children = [subprocess.Popen([sys.executable, "-c", UNPACK_CHILD, str(archive)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=child_env(tmp_path)) for _ in range(4)]
    outs = [c.communicate(timeout=180) for c in children]
    assert all(c.returncode == 0 for c in children), [err[-500:] for _, err in outs]
    assert len({out.split()[1] for out, _ in outs}) == 1  # one fingerprint: all read the same images
    unpacked = list((tmp_path / "data" / "unpacked").iterdir())
    assert [p.name for p in unpacked if not p.name.endswith(".lock")] == [f"set-{hashlib.sha256(archive.read_bytes()).hexdigest()[:16]}"]
    assert not leftovers(tmp_path)


def test_two_trees_of_one_name_never_share_results(scratch):
    first = make_tree(scratch / "a" / "mydata", per_class=(60, 5), size=32)  # (smoke's batch is 100)
    second = make_tree(scratch / "b" / "mydata", per_class=(60, 5), size=32, seed=5)
    settings = clr_cifar10.EXPERIMENT.settings("smoke", data=str(first))
    labelled = clr_cifar10.EXPERIMENT.run_configs(settings)[:1]
    trained = run_in_order(settings, labelled, progress=False)[0][0]
    assert trained.meta["data"]["data_fingerprint"] == load_data(first).fingerprint
    other = clr_cifar10.EXPERIMENT.settings("smoke", data=str(second))
    assert clr_cifar10.EXPERIMENT.run_configs(other)[0][1].id == labelled[0][1].id  # same name, same id ...
    with pytest.raises(OtherDataError, match="trained on other data"):  # ... but never reused
        run_in_order(other, clr_cifar10.EXPERIMENT.run_configs(other)[:1], progress=False)
    assert RunStore("smoke").load(labelled[0][1]).meta == trained.meta  # and never overwritten


def test_a_hand_edited_record_counts_as_altered(scratch, capsys):
    settings = clr_cifar10.EXPERIMENT.settings("smoke")
    labelled = clr_cifar10.EXPERIMENT.run_configs(settings)[:1]
    config = labelled[0][1]
    run_in_order(settings, labelled, progress=False)
    store = RunStore("smoke")
    path = store.paths(config.id)[1]
    meta = json.loads(path.read_text())
    meta["device"] = "NVIDIA H100"
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    assert store.inspect(config) == (None, "metadata altered")
    assert main(["status", "--profile", "smoke", "clr_cifar10"]) == 1
    assert "1 altered" in capsys.readouterr().out


PROFILE_TEXT = (ROOT / "src" / "lrstudy" / "profiles" / "smoke.yaml").read_text()
REGISTRIES = {"notebooks": EXPERIMENTS, "networks": MODELS}


def test_profile_yaml_reads_exponents_and_refuses_what_it_cannot_read():
    assert parse_profile("smoke", PROFILE_TEXT.replace("budget_scale: 0.001 ", "budget_scale: 1e-3 "), **REGISTRIES) \
        .notebooks["clr_cifar10"]["budget_scale"] == 0.001
    with pytest.raises(ValueError, match="smoke.yaml: not valid YAML: key 'seeds' is given twice"):
        parse_profile("smoke", PROFILE_TEXT + "seeds: 3\n", **REGISTRIES)
    with pytest.raises(ValueError, match="unknown notebook section 'clr_cifar100'"):
        parse_profile("smoke", PROFILE_TEXT.replace("  clr_cifar10:", "  clr_cifar100:"), **REGISTRIES)
    end = PROFILE_TEXT.count("\n") + 2  # the line after the unclosed bracket, wherever the profile ends
    with pytest.raises(ValueError, match=f"(?s)smoke.yaml: not valid YAML.*line {end}"):
        parse_profile("smoke", PROFILE_TEXT + "notebooks: [\n", **REGISTRIES)


@pytest.mark.parametrize("key", ["iterations", "eval_every", "batch_size"])
def test_infinite_counts_are_refused_by_name(key):
    base = dict(profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
                optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
                schedule={"name": "fixed", "lr": 0.001}, iterations=10, batch_size=5, eval_every=5, seed=1)
    with pytest.raises(ValueError, match=f"{key}=inf must be a whole number"):
        RunConfig(**{**base, key: float("inf")})


def test_a_store_that_cannot_be_written_fails_before_training(scratch, monkeypatch):
    runs = scratch / "results" / "smoke" / "runs"
    runs.parent.mkdir(parents=True)
    runs.write_text("a file where the store's folder should be")
    monkeypatch.setattr("lrstudy.execute._train_one", lambda *a, **k: pytest.fail("trained"))
    settings = clr_cifar10.EXPERIMENT.settings("smoke")
    with pytest.raises(OSError, match="the run store .* is not writable.*nothing was trained"):
        run_in_order(settings, clr_cifar10.EXPERIMENT.run_configs(settings)[:1], progress=False)


CLI_ERRORS = [
    (["status", "--profile", "smoke", "clr_cifr10"], "unknown notebook 'clr_cifr10'"),
    (["run", "clr_cifr10", "--profile", "smoke"], "unknown experiment 'clr_cifr10'"),
    (["run", "clr_cifar10", "--profile", "smoke", "--seeds", "0"], "seeds=0"),
    (["run", "clr_cifar10", "--profile", "smoke", "--seeds", "-1"], "seeds=-1"),
    (["run", "clr_cifar10", "--profile", "smoke", "--data", "/nonexistent/tree"], "DATA="),
    (["run", "clr_cifar10", "--profile", "fast"], "needs a CUDA GPU"),
]


@pytest.mark.parametrize("argv, message", CLI_ERRORS, ids=[" ".join(a) for a, _ in CLI_ERRORS])
def test_the_command_line_prints_one_message_and_exits_2(scratch, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (scratch / "results" / "smoke" / "runs").exists()


def test_a_crlf_checkout_keeps_every_committed_result(tmp_path):
    """With core.autocrlf=true (the usual Windows setting) git would rewrite the CSVs' line endings
    and break every checksum; .gitattributes marks results as binary."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(clone), "-c", "core.autocrlf=true", "checkout", "-q", "HEAD", "--",
                    ".gitattributes", "results/cpu/runs"], check=True, timeout=120)
    runs = clone / "results" / "cpu" / "runs"
    some = sorted(runs.glob("*.json"))[:5]
    assert some
    store = RunStore("cpu", runs)
    for json_path in some:
        config = RunConfig.from_dict(json.loads(json_path.read_text())["config"])
        assert store.inspect(config)[1] == "ok", json_path.name


@pytest.mark.parametrize("spec, message", [
    ({"name": "sgdr", "eta_max": 0.1, "eta_min": 0, "T_0": float("inf"), "steps_per_epoch": 5, "T_mult": 2}, "T_0=inf"),
    ({"name": "sgdr", "eta_max": 0.1, "eta_min": 0, "T_0": 1, "steps_per_epoch": float("inf"), "T_mult": 2},
     "steps_per_epoch=inf"),
    ({"name": "triangular", "base_lr": 0.1, "max_lr": 0.2, "step_size": float("inf")}, "step_size=inf"),
    ({"name": "step", "base_lr": 0.1, "gamma": 0.1, "step_size": float("inf")}, "step_size=inf"),
])
def test_infinite_schedule_parameters_are_refused_by_name(spec, message):
    from lrstudy.schedule_specs import make_schedule

    with pytest.raises(ValueError, match=message):
        make_schedule(**spec)


def test_values_that_leave_nothing_to_train_are_warned_about():
    base = dict(profile="smoke", data="synthetic", model={"name": "caffe_cifar10_full"},
                optimizer={"name": "caffe_sgd", "momentum": 0.9, "weight_decay": 0.004},
                schedule={"name": "fixed", "lr": 0.001}, iterations=10, batch_size=5, eval_every=5, seed=1)
    with pytest.warns(UserWarning, match="iterations=1"):
        RunConfig(**{**base, "iterations": 1})
    with pytest.warns(UserWarning, match="largest rate is 1e-300"):
        RunConfig(**{**base, "schedule": {"name": "fixed", "lr": 1e-300}})


def test_a_profile_names_only_known_notebooks_and_precisions_in_precision_of():
    assert parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: bf16}\n", **REGISTRIES) \
        .precision_for("clr_adaptive") == "bf16"
    with pytest.raises(ValueError, match="precision_of names unknown notebook 'clr_adaptiv'"):
        parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptiv: bf16}\n", **REGISTRIES)
    with pytest.raises(ValueError, match=r"precision_of.clr_adaptive='fp16' is out of range"):
        parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: fp16}\n", **REGISTRIES)
    by_row = parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: {'Adam fixed': bf16}}\n",
                           **REGISTRIES)
    assert by_row.precision_for("clr_adaptive") == "fp32" and by_row.row_precisions("clr_adaptive") == \
        {"Adam fixed": "bf16"}
    with pytest.raises(ValueError, match=r"precision_of.clr_adaptive\['Adam fixed'\]='fp16' is out of range"):
        parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: {'Adam fixed': fp16}}\n", **REGISTRIES)
    with pytest.raises(ValueError, match=r"precision_of.clr_adaptive\[3\]: a row is named by its label"):
        parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: {3: bf16}}\n", **REGISTRIES)
    with pytest.raises(ValueError, match="precision_of.clr_adaptive names no row"):
        parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: {}}\n", **REGISTRIES)


def test_a_profile_names_only_rows_its_notebook_has_in_precision_of(monkeypatch):
    from lrstudy import study
    from lrstudy.experiments import get_experiment

    adaptive = get_experiment("clr_adaptive")
    typo = parse_profile("smoke", PROFILE_TEXT + "precision_of: {clr_adaptive: {'Adam fixd': bf16}}\n", **REGISTRIES)
    monkeypatch.setattr(study, "load_profile", lambda *args, **kwargs: typo)
    with pytest.raises(ValueError, match="precision_of.clr_adaptive names unknown row 'Adam fixd'"):
        adaptive.settings("smoke")
