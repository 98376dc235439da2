"""Profiles and parameter checking: how much of each paper's budget a reproduction spends, on what, with how many seeds.

Each profile is a small YAML file in ``lrstudy/profiles/`` (``smoke``, ``cpu``, ``fast``, ``full``).
Top-level keys apply to every notebook; ``notebooks.<name>`` holds that notebook's own knobs, which
its experiment module declares and checks. Notebooks receive the profile's *name* as a papermill
parameter (plus optional overrides) and resolve it here, so every value is validated before any
work starts. A profile with one experiment's knobs and the overrides given is that experiment's
:class:`Settings`, which every layer above passes around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Collection, Mapping, Sequence

import pandas as pd
import torch
import yaml

from .data import DataSource
from .runs import MAX_SEEDS

__all__ = ["Profile", "PROFILES", "load_profile", "resolve_device", "check_section", "DeviceUnavailable",
           "Settings", "DATA_PARAMETERS", "resolve_settings"]

PROFILES = ("smoke", "cpu", "fast", "full")
DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16")


class DeviceUnavailable(RuntimeError):
    """The profile asks for a device this machine does not have."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    data: str  # default CIFAR-10 source; the `data` parameter / DATA= overrides it
    data_cifar100: str  # default CIFAR-100 source (`data_cifar100` parameter)
    data_mnist: str  # default MNIST source (`data_mnist` parameter)
    device: str
    precision: str
    seeds: int
    checkpoint_every: int
    fuse: int  # up to this many runs of one small net trained as one batched computation (1: never)
    compile: bool  # torch.compile the networks (worth it on a GPU, not on a CPU)
    capture: tuple = ()  # networks whose whole training step is captured (CUDA graphs), when compiling
    notebooks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    priority: tuple[str, ...] = ()  # notebooks whose claims the run queue completes before any other's
    # The CIFAR-10 data label the profile's committed runs were trained on (e.g. cifar10-jpeg): what
    # the commands that only read the store (status, scorecard) judge when no --data is given. None:
    # the profile's `data`. Training without --data still uses `data`.
    results_data: str | None = None

    def section(self, notebook: str) -> dict:
        if notebook not in self.notebooks:
            raise ValueError(f"profile {self.name!r} has no settings for notebook {notebook!r} "
                             f"(it has: {sorted(self.notebooks)})")
        return dict(self.notebooks[notebook])


def check_section(where: str, values: Mapping[str, Any], spec: Mapping[str, tuple]) -> dict:
    """Validate a mapping against ``{key: (type_or_types, check, description)}``.

    Unknown keys, missing keys, wrong types and failed checks raise one ``ValueError`` naming the
    key, the value and what is allowed.
    """
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (allowed: {sorted(spec)})")
    out = {}
    for key, (types, check, allowed) in spec.items():
        if key not in values:
            raise ValueError(f"{where}: missing key {key!r} ({allowed})")
        value = values[key]
        if isinstance(value, bool) and bool not in _as_tuple(types):
            raise ValueError(f"{where}: {key}={value!r} has the wrong type; {allowed}")
        if not isinstance(value, types):
            raise ValueError(f"{where}: {key}={value!r} has the wrong type; {allowed}")
        if check is not None and not check(value):
            raise ValueError(f"{where}: {key}={value!r} is out of range; {allowed}")
        out[key] = value
    return out


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


_PROFILE_SPEC = {
    "description": (str, None, "a sentence saying what the profile is for"),
    "data": (str, lambda v: v.strip() != "", "a CIFAR-10 source: cifar10, synthetic or a path"),
    "data_cifar100": (str, lambda v: v.strip() != "", "a CIFAR-100 source: cifar100, synthetic-cifar100 or a path"),
    "data_mnist": (str, lambda v: v.strip() != "", "an MNIST source: mnist, synthetic-mnist or a path"),
    "device": (str, lambda v: v in DEVICES, f"one of {list(DEVICES)}"),
    "precision": (str, lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"),
    "seeds": (int, lambda v: 1 <= v <= MAX_SEEDS, f"a whole number in [1, {MAX_SEEDS}]"),
    "checkpoint_every": (int, lambda v: v >= 1, "updates between checkpoints of a run in progress, >= 1"),
    "fuse": (int, lambda v: v >= 1, "how many runs of one small net may train as one batched computation (1: never)"),
    "compile": (bool, None, "whether to torch.compile the networks (true or false)"),
    "capture": (list, lambda v: all(isinstance(n, str) for n in v),
                "a list of network names (e.g. [caffe_cifar10_full, lenet]) whose whole training step is "
                "captured as CUDA graphs (torch.compile mode reduce-overhead) when the profile compiles; [] for none"),
    "notebooks": (dict, None, "a mapping from notebook name to its settings"),
    "priority": (list, None, "notebooks whose claims the run queue completes first, e.g. [clr_cifar10]; [] for none"),
}


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter where a silent reading would surprise: a key given twice is an
    error (PyYAML keeps the last), and ``2e-2`` is a number (YAML 1.1 asks for a dot: ``2.0e-2``)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(text: str, where: str):
    """Parse YAML with :class:`_StrictLoader`; an error names ``where`` (the file) and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not valid YAML: {err}") from None


def load_profile(name: str, *, notebooks: Collection[str] | None, networks: Collection[str] | None) -> Profile:
    """Read and check ``profiles/<name>.yaml``: every key, every notebook section's name against
    ``notebooks`` and every captured network against ``networks`` (the registries of the experiments
    and models, which the caller knows and this module does not; None leaves that check out)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {list(PROFILES)}")
    text = resources.files("lrstudy").joinpath("profiles", f"{name}.yaml").read_text()
    return parse_profile(name, text, notebooks=notebooks, networks=networks)


def parse_profile(name: str, text: str, *, notebooks: Collection[str] | None,
                  networks: Collection[str] | None) -> Profile:
    """A profile from its YAML text (see :func:`load_profile`)."""
    where = f"profile file lrstudy/profiles/{name}.yaml"
    raw = read_yaml(text, where) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of settings, found {type(raw).__name__}")
    results_data = raw.pop("results_data", None)  # (optional, unlike the keys of _PROFILE_SPEC)
    if results_data is not None and not (isinstance(results_data, str) and results_data.strip()):
        raise ValueError(f"{where}: results_data={results_data!r} must name a data label (e.g. cifar10-jpeg)")
    values = check_section(where, raw, _PROFILE_SPEC)
    if notebooks is not None:
        unknown = sorted(set(values["notebooks"]) - set(notebooks))
        if unknown:
            raise ValueError(f"{where}: unknown notebook section {unknown[0]!r} (known: {sorted(notebooks)})")
        unknown = [n for n in values["priority"] if n not in notebooks]
        if unknown:
            raise ValueError(f"{where}: priority names unknown notebook {unknown[0]!r} (known: {sorted(notebooks)})")
    if networks is not None:
        unknown = sorted(set(values["capture"]) - set(networks))
        if unknown:
            raise ValueError(f"{where}: capture names an unknown network {unknown[0]!r} (known: {sorted(networks)})")
    return Profile(name=name, **{**values, "priority": tuple(values["priority"]), "capture": tuple(values["capture"])},
                   results_data=results_data)


# Every data set a row may train on, and the parameter naming its source: the notebooks' papermill
# parameter, the profile's key and, upper-cased, the Make variable. A new data set is one entry here.
DATA_PARAMETERS = {"cifar10": "data", "cifar100": "data_cifar100", "mnist": "data_mnist"}


@dataclass(frozen=True)
class Settings:
    """What one experiment runs under: the profile, its overrides, and the experiment's own knobs."""

    experiment: str
    profile: Profile
    data: dict[str, DataSource]  # {data set: source}, for every data set the experiment trains on
    device: str
    precision: str
    seeds: tuple[int, ...]
    knobs: dict = field(default_factory=dict)
    train: bool = True  # whether runs the store lacks are trained (else the store is only read)

    @property
    def data_name(self) -> str:
        """What the CIFAR-10 source is (a JPEG copy, say), as results must call it."""
        return self.data["cifar10"].label

    def source_of(self, data_id: str) -> DataSource:
        """The source of the data set with this id."""
        return next(source for source in self.data.values() if source.id == data_id)

    def table(self) -> pd.DataFrame:
        rows = [
            ("profile", self.profile.name, self.profile.description),
            *[("data" if name == "cifar10" else f"data ({name})", source.label, f"source: {source.name}")
              for name, source in self.data.items()],
            ("device", self.device, "where missing runs are trained"),
            ("precision", self.precision, "bf16 = bfloat16 autocast for forward passes; rows may name their own"),
            ("seeds", ", ".join(map(str, self.seeds)), "one run per setting and seed"),
        ]
        rows += [(k, f"{v:g}" if isinstance(v, float) else str(v), "notebook setting")
                 for k, v in self.knobs.items()]
        return pd.DataFrame(rows, columns=["setting", "value", "meaning"]).set_index("setting")


def resolve_settings(experiment: str, profile: Profile, knobs: dict, seeds, device, data_sets: Sequence[str],
                     sources: Mapping[str, str | None], precision: str | None = None) -> Settings:
    """Settings from a profile plus overrides (``None`` keeps the profile's value); ``sources``
    holds a source per data parameter (``data``, ``data_cifar100``, ...) the experiment takes."""
    if seeds is None:
        seeds = profile.seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"seeds={seeds!r} must be a whole number in [1, {MAX_SEEDS}]")
    device = profile.device if device in (None, "", "None") else device
    if device not in DEVICES:
        raise ValueError(f"device={device!r}; choose one of {list(DEVICES)}")
    parameters = [DATA_PARAMETERS[name] for name in data_sets]
    unknown = sorted(set(sources) - set(parameters))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; this notebook takes {parameters}")
    data = {}
    for name, parameter in zip(data_sets, parameters):
        given = sources.get(parameter)
        data[name] = DataSource.of(getattr(profile, parameter) if given in (None, "", "None") else str(given))
    precision = profile.precision if precision in (None, "", "None") else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {list(PRECISIONS)}")
    return Settings(experiment, profile, data, device, precision, tuple(range(1, seeds + 1)), knobs)


def resolve_device(requested: str) -> torch.device:
    """``cuda``/``cpu``/``auto`` to a device, with a clear error when CUDA is asked for but absent."""
    if requested not in DEVICES:
        raise ValueError(f"device={requested!r}; choose one of {list(DEVICES)}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            "this profile needs a CUDA GPU, and torch sees none "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
            "Use PROFILE=cpu (or profile='cpu'), or pass device='cpu' to run it slowly on the CPU."
        )
    return torch.device(requested)
