"""The papers' own numbers, from one cited table (``paper_tables.csv``).

Every number a notebook compares against comes from that file, with the paper, its arXiv version
and the table it was transcribed from; nothing is typed into a notebook.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["paper_table", "CITATIONS"]

CITATIONS = {
    "CLR": "L. N. Smith, Cyclical Learning Rates for Training Neural Networks, WACV 2017 "
           "(arXiv:1506.01186v6)",
    "SGDR": "I. Loshchilov and F. Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, ICLR 2017 "
            "(arXiv:1608.03983v5)",
    "SC": "L. N. Smith and N. Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large "
          "Learning Rates (arXiv:1708.07120v3; numbers not in the readable abstract are marked as such)",
}


def paper_table(paper: str | None = None, table: str | list[str] | None = None, dataset: str | None = None,
                model: str | None = None) -> pd.DataFrame:
    """Rows of ``paper_tables.csv``, optionally filtered (``table`` may be a list of tables)."""
    with resources.files("lrstudy").joinpath("paper_tables.csv").open() as f:
        df = pd.read_csv(f)
    for column, value in (("paper", paper), ("table", table), ("dataset", dataset), ("model", model)):
        if value is not None:
            df = df[df[column].isin(value if isinstance(value, list) else [value])]
    return df.reset_index(drop=True)
