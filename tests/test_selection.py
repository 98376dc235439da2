"""Choosing part of an experiment's runs from the command line or Python."""

import pytest

from lrstudy.__main__ import main
from lrstudy.experiments import clr_cifar10
from lrstudy.selection import parse_seed_range, select


def labelled(seeds=3):
    experiment = clr_cifar10.EXPERIMENT
    return experiment.run_configs(experiment.settings("smoke", seeds=seeds))


def test_only_and_seed_range_select_exactly_those_runs():
    runs = labelled()
    chosen = select(runs, only=["fixed,exp", "triangular, stepsize 2 epochs"], seeds=parse_seed_range("2-3"))
    assert [(label, c.seed) for label, c in chosen] == [
        ("fixed", 2), ("exp", 2), ("triangular, stepsize 2 epochs", 2),
        ("fixed", 3), ("exp", 3), ("triangular, stepsize 2 epochs", 3)]
    assert select(runs) == runs


@pytest.mark.parametrize("text", ["0-2", "3-1", "a", "1-", ""])
def test_bad_seed_ranges_are_refused(text):
    with pytest.raises(ValueError, match="seed range"):
        parse_seed_range(text)


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown setting 'fixd'.*'fixed', 'triangular2'"):
        select(labelled(1), only=["fixd"])


def test_run_command_trains_only_the_selection(scratch, capsys):
    assert main(["run", "clr_cifar10", "--profile", "smoke", "--only", "fixed", "--seed-range", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 runs to train" in out and "fixed seed 2: finished" in out
