"""lrstudy: a reproducibility study of three learning-rate papers.

Smith, Cyclical Learning Rates (2017); Loshchilov & Hutter, SGDR (2017); Smith & Topin,
Super-Convergence (2017/18). Computation lives here; the notebooks in ``notebooks/`` present it.
"""

__version__ = "0.1.0"
