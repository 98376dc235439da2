"""Typed knobs: what a profile may set, declared as frozen dataclasses whose fields carry their
default, their type, their allowed range and the sentence that explains them.

A profile's section holds only what differs from the defaults; :func:`read_knobs` checks each key
it gives against its field (type, range, unknown keys) and raises one ``ValueError`` line naming
the file or section, the key and what is allowed. Experiments build their knob classes from the
shared pieces here: :class:`Knobs` (the budget), :class:`CaffeNetKnobs`, :class:`DeepNetKnobs`
(batch and data subsets of the deep-net experiments), :func:`eval_every` and the network sizes,
spelled one way everywhere::

    networks: {resnet: {depth: 20}, wrn: {depth: 16, width: 4}}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Mapping, TypeVar

__all__ = ["knob", "read_knobs", "knob_rows", "eval_every", "Knobs", "CaffeNetKnobs", "DeepNetKnobs", "NetworkSize",
           "WideNetworkSize"]

K = TypeVar("K")


def knob(default: Any = MISSING, text: str = "", *, factory: Any = MISSING, above: float | None = None,
         at_least: float | None = None, at_most: float | None = None, choices: tuple | None = None,
         nonblank: bool = False) -> Any:
    """A dataclass field that a profile may set: ``text`` says what it means and what is allowed
    (it ends every error about the key); the range (``above``, ``at_least``, ``at_most``,
    ``choices``, ``nonblank`` for text) is checked on every value that is not None. No default
    (nor ``factory``, which makes a mutable one): every profile must give it."""
    limits = {"above": above, "at_least": at_least, "at_most": at_most, "choices": choices, "nonblank": nonblank}
    return dataclasses.field(default=default, default_factory=factory, metadata={"knob": True, "text": text, **limits})


def eval_every(default: int) -> int:
    """The ``eval_every`` knob, with the experiment's own default."""
    return knob(default, "iterations between test-set evaluations, >= 1", at_least=1)


def read_knobs(kind: type[K], values: Any, where: str, **fixed: Any) -> K:
    """``kind`` from a profile's mapping: its knob fields' defaults with the given keys replaced,
    each checked against its field, and its other fields from ``fixed``. A nested knob class (a
    network's size) is read the same way from a nested mapping, starting from the default's values,
    its keys named with dots (``networks.resnet.depth``)."""
    return _read(kind, values, where, "", None, fixed)


def _read(kind: type, values: Any, where: str, prefix: str, base: Any, fixed: Mapping[str, Any]) -> Any:
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: {prefix.rstrip('.') or 'the section'}={values!r} must be a mapping of settings")
    fields = {f.name: f for f in dataclasses.fields(kind) if f.metadata.get("knob")}
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown key {prefix + str(unknown[0])!r} (allowed: {sorted(fields)})")
    hints = typing.get_type_hints(kind)
    given = {}
    for name, value in values.items():
        current = getattr(base, name) if base is not None else fields[name].default
        given[name] = _read_value(hints[name], fields[name], value, where, prefix + name, current)
    if base is not None:
        return dataclasses.replace(base, **given)
    for name, f in fields.items():
        if name not in given and f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"{where}: missing key {prefix + name!r} ({f.metadata['text']})")
    return kind(**fixed, **given)


def _read_value(hint: Any, f: dataclasses.Field, value: Any, where: str, key: str, current: Any) -> Any:
    text = f.metadata["text"]
    wrong = ValueError(f"{where}: {key}={value!r} has the wrong type; {text}")
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) not in options:
            raise wrong
        return None
    kind = next(option for option in options if option is not type(None))
    if dataclasses.is_dataclass(kind):
        return _read(kind, value, where, key + ".", current if dataclasses.is_dataclass(current) else None, {})
    typed = _typed(kind, value, wrong)
    limits = f.metadata
    inside = ((limits.get("above") is None or typed > limits["above"])
              and (limits.get("at_least") is None or typed >= limits["at_least"])
              and (limits.get("at_most") is None or typed <= limits["at_most"])
              and (limits.get("choices") is None or typed in limits["choices"])
              and (not limits.get("nonblank") or typed.strip() != ""))
    if not inside:  # (the value as the profile wrote it)
        raise ValueError(f"{where}: {key}={value!r} is out of range; {text}")
    return typed


def _typed(kind: Any, value: Any, wrong: ValueError) -> Any:
    """``value`` as a ``kind`` (a whole number is a float where a float is asked for, a list a tuple),
    or ``wrong`` raised; a bool is never a number."""
    if typing.get_origin(kind) is tuple:
        (item, _) = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, item) for v in value):
            raise wrong
        return tuple(value)
    origin = typing.get_origin(kind) or kind
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and origin is not bool:
        raise wrong
    if not isinstance(value, origin):
        raise wrong
    return value


def knob_rows(knobs: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(key, value, meaning)`` for every knob, nested ones by their dotted key."""
    out = []
    for f in dataclasses.fields(knobs):
        if not f.metadata.get("knob"):
            continue
        value = getattr(knobs, f.name)
        if dataclasses.is_dataclass(value):
            out += knob_rows(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value, f.metadata["text"]))
    return out


@dataclass(frozen=True)
class Knobs:
    """What every experiment's profile section may set: how much of the paper's budget it trains."""

    budget_scale: float = knob(1.0, "fraction of the paper's iterations, in (0, 1]; schedules are stretched to "
                                    "match", above=0, at_most=1)

    def scale_of(self, label: str) -> float:
        """The fraction of its paper iterations the row ``label`` trains."""
        return self.budget_scale


@dataclass(frozen=True)
class CaffeNetKnobs(Knobs):
    """The knobs of CLR's CIFAR-10 tables, trained with Caffe's solver."""

    eval_every: int = eval_every(1000)  # the CIFAR-10 solver's test_interval


@dataclass(frozen=True)
class DeepNetKnobs(Knobs):
    """The deep-net experiments' knobs: smaller batches and fewer images in the cheap profiles."""

    batch_scale: float = knob(1.0, "factor on every run's batch size and learning rate (linear scaling rule), "
                                   "in (0, 1]; below 1 only in the cheap profiles", above=0, at_most=1)
    train_subset: int | None = knob(None, "training images per run (a fixed class-balanced subset); null: the "
                                          "paper's", at_least=1)
    test_subset: int | None = knob(None, "test images per evaluation (a fixed class-balanced subset); null: all",
                                   at_least=1)


@dataclass(frozen=True)
class NetworkSize:
    """How deep one network of an experiment is (each experiment's default is the paper's)."""

    depth: int = knob(text="the network's depth, a whole number >= 1", at_least=1)


@dataclass(frozen=True)
class WideNetworkSize(NetworkSize):
    """A wide network's depth and width (WRN-depth-width)."""

    width: int = knob(1, "the network's width factor, a whole number >= 1", at_least=1)
