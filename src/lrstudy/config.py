"""Profiles and parameter checking: how much of each paper's budget a reproduction spends, on what, with how many seeds.

Each profile is a small YAML file in ``lrstudy/profiles/`` (``smoke``, ``cpu``, ``fast``, ``full``).
A file gives only what differs from the defaults: top-level keys (the knob fields of :class:`Profile`)
apply to every notebook; ``notebooks.<name>`` holds that notebook's own knobs, which its experiment
module declares (a :class:`~lrstudy.knobs.Knobs` dataclass) and checks. Notebooks receive the profile's *name* as a papermill
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
from .knobs import Knobs, knob, knob_rows, read_knobs
from .runs import MAX_SEEDS

__all__ = ["Profile", "PROFILES", "load_profile", "resolve_device", "DeviceUnavailable",
           "Settings", "DATA_PARAMETERS", "resolve_settings"]

PROFILES = ("smoke", "cpu", "fast", "full")
DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16")


class DeviceUnavailable(RuntimeError):
    """The profile asks for a device this machine does not have."""


@dataclass(frozen=True)
class Profile:
    """A profile: its name (the file's) and its top-level keys, each a knob with its meaning; a
    profile file gives the keys without a default and those where it differs from the default."""

    name: str
    description: str = knob(text="a sentence saying what the profile is for")
    device: str = knob(text=f"where missing runs are trained: one of {list(DEVICES)}", choices=DEVICES)
    seeds: int = knob(text=f"runs per setting, a whole number in [1, {MAX_SEEDS}]", at_least=1, at_most=MAX_SEEDS)
    data: str = knob("cifar10", "the CIFAR-10 source: cifar10, synthetic or a path (the `data` parameter or DATA= "
                                "overrides it)", nonblank=True)
    data_cifar100: str = knob("cifar100", "the CIFAR-100 source: cifar100, synthetic-cifar100 or a path (the "
                                          "`data_cifar100` parameter overrides it)", nonblank=True)
    data_mnist: str = knob("mnist", "the MNIST source: mnist, synthetic-mnist or a path (the `data_mnist` parameter "
                                    "overrides it)", nonblank=True)
    # what the commands that only read the store (status, scorecard) judge when no --data is given
    results_data: str | None = knob(None, "the CIFAR-10 data label the profile's committed runs were trained on "
                                          "(e.g. cifar10-jpeg); null: the label of `data`. Training without --data "
                                          "still uses `data` (other images: every run again)", nonblank=True)
    precision: str = knob("fp32", f"one of {list(PRECISIONS)}; bf16 = bfloat16 autocast for forward passes",
                          choices=PRECISIONS)
    # a notebook (or some of its rows) whose new experiments may train in another precision once a
    # declared check allowed it; naming rows keeps the notebook's other rows in `precision`
    precision_of: Mapping[str, Any] = knob(text="the notebooks that train in another precision than `precision`, "
                                                "by notebook name: a precision for all its rows (e.g. {clr_adaptive: "
                                                "bf16}) or one per row label (e.g. {super_convergence: {'range test "
                                                "0-3: ResNet-56': bf16}}); {}: none", factory=dict)
    checkpoint_every: int = knob(2000, "updates between checkpoints of a run in progress (a killed run resumes from "
                                       "the last), >= 1", at_least=1)
    fuse: int = knob(1, "on CUDA, up to this many runs of one small net train as one batched computation (1: never; "
                        "on a CPU none unless asked, as it is slower there)", at_least=1)
    compile: bool = knob(False, "whether to torch.compile the networks (worth it on a GPU, not on a CPU)")
    capture: tuple[str, ...] = knob((), "networks (e.g. [caffe_cifar10_full, lenet]) whose whole training step is "
                                        "captured as CUDA graphs (torch.compile mode reduce-overhead) when the profile "
                                        "compiles; [] for none")
    priority: tuple[str, ...] = knob((), "notebooks whose claims the run queue completes before any other's (the "
                                         "Caffe-net tables first, say: [clr_range_test, clr_cifar10, clr_adaptive]); "
                                         "[]: by evidence per minute")
    notebooks: Mapping[str, Any] = knob(text="each notebook's knobs that differ from its defaults, by notebook name "
                                             "(each experiment declares and checks its own)", factory=dict)

    def precision_for(self, notebook: str) -> str:
        """The precision of the notebook's rows that neither name one nor are named in ``precision_of``."""
        given = self.precision_of.get(notebook, self.precision)
        return given if isinstance(given, str) else self.precision

    def row_precisions(self, notebook: str) -> dict[str, str]:
        """The rows of the notebook that ``precision_of`` names one by one: {row label: precision}."""
        given = self.precision_of.get(notebook)
        return dict(given) if isinstance(given, Mapping) else {}

    def precision_exceptions(self) -> str:
        """``precision_of`` as a reader says it: "clr_adaptive: bf16; super_convergence's rows 'a', 'b': bf16"."""
        parts = []
        for notebook, given in sorted(self.precision_of.items()):
            if isinstance(given, str):
                parts.append(f"{notebook}: {given}")
                continue
            for precision, labels in sorted(quoted_rows_by_precision(given).items()):
                parts.append(f"{notebook}'s {'row' if len(labels) == 1 else 'rows'} {', '.join(labels)}: {precision}")
        return "; ".join(parts)

    def section(self, notebook: str) -> Any:
        """The notebook's knobs that this profile sets, as written ({} where it keeps every default)."""
        return self.notebooks.get(notebook) or {}


def quoted_rows_by_precision(row_precision: Mapping[str, str], besides: str | None = None) -> dict[str, list[str]]:
    """{precision: ["'label'", ...]} of rows named one by one (leaving out the precision ``besides``),
    in the order given: how pages and status lines name them."""
    out: dict[str, list[str]] = {}
    for label, precision in row_precision.items():
        if precision != besides:
            out.setdefault(precision, []).append(f"'{label}'")
    return out


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
    profile = read_knobs(Profile, raw, where, name=name)
    for notebook, given in profile.precision_of.items():
        by_row = given.items() if isinstance(given, Mapping) else [(None, given)]
        if isinstance(given, Mapping) and not given:
            raise ValueError(f"{where}: precision_of.{notebook} names no row; give a precision or row labels")
        for label, precision in by_row:
            key = notebook if label is None else f"{notebook}[{label!r}]"
            if not isinstance(label, (str, type(None))):
                raise ValueError(f"{where}: precision_of.{key}: a row is named by its label, a string")
            if precision not in PRECISIONS:
                raise ValueError(f"{where}: precision_of.{key}={precision!r} is out of range; one of {list(PRECISIONS)}")
    if notebooks is not None:
        unknown = sorted(set(profile.notebooks) - set(notebooks))
        if unknown:
            raise ValueError(f"{where}: unknown notebook section {unknown[0]!r} (known: {sorted(notebooks)})")
        unknown = sorted(set(profile.precision_of) - set(notebooks))
        if unknown:
            raise ValueError(f"{where}: precision_of names unknown notebook {unknown[0]!r} (known: {sorted(notebooks)})")
        unknown = [n for n in profile.priority if n not in notebooks]
        if unknown:
            raise ValueError(f"{where}: priority names unknown notebook {unknown[0]!r} (known: {sorted(notebooks)})")
    if networks is not None:
        unknown = sorted(set(profile.capture) - set(networks))
        if unknown:
            raise ValueError(f"{where}: capture names an unknown network {unknown[0]!r} (known: {sorted(networks)})")
    return profile


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
    knobs: Knobs = field(default_factory=Knobs)
    train: bool = True  # whether runs the store lacks are trained (else the store is only read)
    row_precision: Mapping[str, str] = field(default_factory=dict)  # rows the profile gives their own precision

    def precision_of_row(self, label: str) -> str:
        """The precision of the row ``label`` where the row itself names none."""
        return self.row_precision.get(label, self.precision)

    @property
    def precision_text(self) -> str:
        """The planned precision as a reader says it: "fp32" or "fp32 (bf16: 'range test 0-3: ResNet-56')"."""
        others = quoted_rows_by_precision(self.row_precision, besides=self.precision)
        return self.precision + "".join(f" ({precision}: {', '.join(labels)})" for precision, labels in others.items())

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
            ("precision", self.precision_text, "bf16 = bfloat16 autocast for forward passes; rows may name their own"),
            ("seeds", ", ".join(map(str, self.seeds)), "one run per setting and seed"),
        ]
        rows += [(key, f"{value:g}" if isinstance(value, float) else str(value), meaning)
                 for key, value, meaning in knob_rows(self.knobs)]
        return pd.DataFrame(rows, columns=["setting", "value", "meaning"]).set_index("setting")


def resolve_settings(experiment: str, profile: Profile, knobs: Knobs, seeds, device, data_sets: Sequence[str],
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
    # an explicit precision is for every row that names none, the ones the profile names included
    by_row = profile.row_precisions(experiment) if precision in (None, "", "None") else {}
    precision = profile.precision_for(experiment) if precision in (None, "", "None") else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; choose one of {list(PRECISIONS)}")
    return Settings(experiment, profile, data, device, precision, tuple(range(1, seeds + 1)), knobs,
                    row_precision=by_row)


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
