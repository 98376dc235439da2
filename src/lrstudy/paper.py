"""The papers' own numbers, from one cited table (``paper_tables.csv``).

Every number a notebook compares against comes from that file, with the paper, its arXiv version
and the table it was transcribed from; nothing is typed into a notebook.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["paper_table", "paper_value"]


def paper_table(paper: str | None = None, table: str | list[str] | None = None, dataset: str | None = None,
                model: str | None = None) -> pd.DataFrame:
    """Rows of ``paper_tables.csv``, optionally filtered (``table`` may be a list of tables)."""
    with resources.files("lrstudy").joinpath("paper_tables.csv").open() as f:
        df = pd.read_csv(f)
    for column, value in (("paper", paper), ("table", table), ("dataset", dataset), ("model", model)):
        if value is not None:
            df = df[df[column].isin(value if isinstance(value, list) else [value])]
    return df.reset_index(drop=True)


def paper_value(paper: str, setting: str) -> float:
    """The paper's number for one setting (e.g. ``paper_value("CLR", "range test max_lr")``)."""
    table = paper_table(paper)
    match = table[table.setting == setting]
    if len(match) != 1:
        raise ValueError(f"paper_tables.csv has {len(match)} rows for {paper} setting {setting!r}; expected one")
    return float(match.value.iloc[0])
