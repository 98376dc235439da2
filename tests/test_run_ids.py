"""Run ids are the keys of every stored result: a change to the code must not move them."""

from pathlib import Path

from run_ids import run_id_lines

COMMITTED = Path(__file__).parent / "data" / "run_ids.txt"


def test_every_run_id_of_every_profile_is_unchanged():
    expected = COMMITTED.read_text().splitlines()
    actual = run_id_lines()
    changed = sorted(set(expected) ^ set(actual))
    assert not changed, f"{len(changed)} run ids differ, e.g. {changed[:3]} (see tests/run_ids.py)"
    assert actual == expected  # and in the same order (seeds outermost)
