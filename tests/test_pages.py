"""The page test and what makes pages pass it: readable tables, cleaned notebooks, formulas as
MathML, navigation, summary boxes checked against the run records -- and one training notebook
rendered on the smoke profile, end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrstudy import ledger, pages
from lrstudy.notebook import format_cell, readable

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- tables


def test_readable_tables_print_no_nan_none_exponent_or_dict():
    table = pd.DataFrame({"ours_mean": [80.34, np.nan], "lr": [1.149e-2, 4e-4], "iterations": [24000.0, np.nan],
                          "optimizer": [{"name": "sgd", "momentum": 0.9}, None],
                          "paper_iterations": pd.array([70000, None], dtype="Int64"), "note": ["x", None]})
    shown = readable(table)
    cells = shown.to_numpy().ravel().tolist()
    assert list(shown.columns) == ["ours (mean)", "lr", "iterations", "optimizer", "paper's iterations", "note"]
    assert shown.iloc[0].tolist() == ["80.34", "0.011", "24,000", "name=sgd, momentum=0.90", "70,000", "x"]
    assert shown.iloc[1]["lr"] == "0.0004"
    for bad in ("nan", "NaN", "<NA>", "None", "e-0", "{"):
        assert not any(bad in cell for cell in cells), bad


@pytest.mark.parametrize("value, text", [(80.0, "80.00"), (0.5, "0.50"), (1e-5, "0.00001"), (4.508563e-15, "4.5e-15"), (0, "0"),
                                         (math.nan, "–"), (None, "–"), (pd.NA, "–"), (True, "yes"), (70000, "70,000"),
                                         ([1, 2], "1, 2"), ({}, "–")])
def test_format_cell_boundaries(value, text):
    assert format_cell(value) == text


# ---------------------------------------------------------------- cleaning and rendering


def _notebook(cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def test_clean_notebook_drops_parameter_cells_and_progress_lines():
    import nbformat

    params = nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('# Parameters\ndata = "../../../../work/shared/data/cifar10-jpeg.tar.xz"',
                                         metadata={"tags": ["injected-parameters"]})
    work = nbformat.v4.new_code_cell("train()")
    work.outputs = [nbformat.v4.new_output("stream", name="stderr", text=(
        "[1/2] triangular seed 1:  45%|####5     | 450/1000 [00:02<00:03, 150.2it/s]\r"
        "[1/2] triangular seed 1: 100%|##########| 1000/1000 [00:05<00:00, 190.0it/s]\n")),
        nbformat.v4.new_output("stream", name="stdout", text="1 of 2 runs to train.\n")]
    nb = pages.clean_notebook(_notebook([params, injected, work]))
    assert [c.source for c in nb.cells] == ["train()"]
    assert [o["text"] for o in nb.cells[0].outputs] == ["1 of 2 runs to train.\n"]


def test_formulas_become_mathml_and_code_spans_stay():
    text = pages.tex_to_mathml(r"rate $\eta_t = \eta_{max}\,t/T$ and $$\frac{a}{b}$$; code `$x_1$` and 5 $ or 6 $")
    assert text.count("<math") == 2 and 'display="block"' in text
    assert "`$x_1$`" in text and "\\eta" not in text


def test_a_rendered_page_reads_offline_and_links_its_neighbours(tmp_path):
    import nbformat

    folder = tmp_path / "smoke"
    folder.mkdir()
    for name in ("schedules", "clr_range_test"):
        nb = _notebook([nbformat.v4.new_markdown_cell(r"# " + name + "\n\nThe rate $\\eta_t$ rises."),
                        nbformat.v4.new_code_cell("1 + 1")])
        nbformat.write(nb, folder / f"{name}.ipynb")
        pages.render(folder / f"{name}.ipynb")
    (folder / "index.html").write_text("<html><body>index</body></html>")
    pages.link(folder)
    first = (folder / "schedules.html").read_text()
    assert 'href="clr_range_test.html"' in first and 'href="index.html"' in first
    assert 'href="schedules.reader.html"' in first
    assert 'href="schedules.reader.html"' not in (folder / "clr_range_test.html").read_text()
    assert "cdnjs" not in first and "<math" in first
    assert "1 + 1" not in (folder / "schedules.reader.html").read_text()
    assert pages.check([folder]) == []
    pages.link(folder)  # idempotent: one bar
    assert (folder / "schedules.html").read_text().count(pages.NAV_START) == 1


def _figure(colour: str) -> str:
    """A small PNG, base64 as a notebook holds it."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1], color=colour)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _notebook_with_figure(path: Path, colour: str) -> None:
    import nbformat

    cell = nbformat.v4.new_code_cell("plot()")
    figure = {"image/png": _figure(colour), "text/plain": "<Figure>"}
    cell.outputs = [nbformat.v4.new_output("display_data", data=figure)]
    nbformat.write(_notebook([nbformat.v4.new_markdown_cell("# A figure"), cell]), path)


def test_a_figure_is_one_file_both_renders_show_and_the_style_sheet_one_per_folder(tmp_path):
    """The executed notebook keeps its figure; the two renders link one PNG in <name>_files/ and
    one style sheet for the folder, instead of a copy of each inside each page."""
    folder = tmp_path / "smoke"
    folder.mkdir()
    for name in ("schedules", "clr_range_test"):
        _notebook_with_figure(folder / f"{name}.ipynb", "C0")
        pages.render(folder / f"{name}.ipynb")
    figures = list((folder / "schedules_files").glob("*.png"))
    assert len(figures) == 1
    for page in (folder / "schedules.html", folder / "schedules.reader.html"):
        text = page.read_text()
        assert "data:image/png" not in text and "<style" not in text.split("</head>")[0]
        assert pages.page_assets(page) == [f"style.{_one_style(folder)}.css", f"schedules_files/{figures[0].name}"]
    assert "image/png" in (folder / "schedules.ipynb").read_text()  # the canonical copy keeps its outputs
    assert len(list(folder.glob("style.*.css"))) == 1
    assert pages.check([folder]) == []

    (folder / "schedules_files" / "notes.txt").write_text("not render's")
    _notebook_with_figure(folder / "schedules.ipynb", "C3")  # a figure that changed
    pages.render(folder / "schedules.ipynb")
    now = sorted(p.name for p in (folder / "schedules_files").iterdir())
    assert figures[0].name not in now and "notes.txt" in now and len(now) == 2
    assert pages.check([folder]) == []


def _one_style(folder: Path) -> str:
    (sheet,) = folder.glob("style.*.css")
    return sheet.name.split(".")[1]


def test_the_summary_counts_paper_claims_apart_and_names_evidence_against_the_paper():
    """An inconclusive verdict whose estimate lies on the wrong side of the rule still goes against
    the paper, and the page says so; the study's added comparisons are counted apart."""
    from lrstudy.notebook import _result_lines
    from lrstudy.stats import Claim

    table = pd.DataFrame({"verdict": ["inconclusive", "confirmed", "inconclusive", "not confirmed"],
                          "difference": [-1.14, 3.2, 0.4, -2.0]},
                         index=["T1.tri2-vs-fixed", "T1.tri2@equal-iterations", "T1.exp", "T1.decay"])
    claims = {"T1.tri2-vs-fixed": Claim("T1.tri2-vs-fixed", "", "a", "b", kind="not_worse", margin=1.0),
              "T1.exp": Claim("T1.exp", "", "a", "b", kind="better")}
    first, confirmed, against = _result_lines(table, {"T1.tri2@equal-iterations"}, claims)
    assert first.startswith("The paper's claims: 3 of 3 judged") and "added comparisons: 1 of 1" in first
    assert confirmed == "Confirmed: T1.tri2@equal-iterations (added)."
    assert "not confirmed: T1.decay" in against and "T1.tri2-vs-fixed (-1.14)" in against
    assert against.endswith("Still open: T1.exp.")


# ---------------------------------------------------------------- figures


def test_the_forest_plot_tells_every_verdict_apart_and_draws_margins():
    import matplotlib

    matplotlib.use("Agg")
    from lrstudy.plots import VERDICT_MARKS, plot_forest
    from lrstudy.stats import Claim

    verdicts = ["confirmed", "not confirmed", "inconclusive", "inconclusive (n < 2)", "confirmed",
                "not testable at this budget", "not run"]
    card = pd.DataFrame({"claim": [f"c{i}" for i in range(7)], "kind": "difference", "verdict": verdicts,
                         "status": ["", "", "", "", "interim (2 of 5)", "", ""],
                         "difference": [1.0, -2.0, 0.2, 0.5, 1.5, 0.1, np.nan],
                         "ci_low": [0.5, -3.0, -0.5, np.nan, 0.2, -1.0, np.nan],
                         "ci_high": [1.5, -1.0, 0.9, np.nan, 2.8, 1.2, np.nan],
                         "added": [False, False, False, False, False, False, True]})
    claims = {"c0": Claim("c0", "a beats b", "a", "b", kind="better", margin=0.0),
              "c2": Claim("c2", "a equals b", "a", "b", kind="equivalent", margin=1.0)}
    fig = plot_forest(card, claims)
    legend = fig.axes[0].get_legend()
    names = [t.get_text() for t in legend.get_texts()]
    assert names[:-1] == [v for v in VERDICT_MARKS]  # interim is its own mark, beside the six verdicts
    assert "margin" in names[-1]
    assert len(fig.axes[0].collections) >= 2  # the two shaded regions
    assert fig.axes[0].get_yticklabels()[-1].get_text() == "c6 (added)"


def test_a_legend_says_what_ran():
    from lrstudy.plots import ran_legend

    spec = {"name": "triangular", "base_lr": 0.01, "max_lr": 0.3, "step_size": 20}
    assert ran_legend("one cycle 0.1-3, 10k iterations", 40, spec).endswith("ran: 40 it., LR 0.01-0.3")


# ---------------------------------------------------------------- the page test


PAGE = "<html><head></head><body>{}</body></html>"


@pytest.mark.parametrize("body, problem", [
    ("<table><tr><td>1</td></tr><tr><td>...</td></tr></table>", "truncated table"),
    ("<p>70 rows × 9 columns</p>", "truncated table"),
    (r"<p>the rate $\eta_{base}$ rises</p>", "raw TeX"),
    ('<pre>data = "../../../../work/shared/data/x.tar.xz"</pre>', "machine path"),
    ("<pre>loaded /home/someone/cifar</pre>", "machine path"),
    ("<pre>seed 1:  45%|####5     | 450/1000 [00:02&lt;00:03, 150.2it/s]</pre>", "progress-bar"),
    ('<a href="elsewhere.html">next</a>', "dead relative link"),
    ('<img src="page_files/0123456789abcdef.png">', "dead relative link"),
    ('<link rel="stylesheet" href="style.0123456789ab.css">', "dead relative link"),
    ('<img src="/opt/pages/figure.png">', "absolute path"),
    ('<img src="file:///C:/pages/figure.png">', "absolute path"),
    ('<img src="data:image/png;base64,' + "A" * 9000 + '">', "figure embedded"),
    ("<style>" + "p { color: red; }" * 2000 + "</style>", "style sheet embedded"),
    ('<script src="https://cdn.example.org/mathjax.js"></script>', "network"),
])
def test_the_page_test_finds_each_kind_of_problem(tmp_path, body, problem):
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(body))
    found = pages.check([page])
    assert len(found) == 1 and problem in found[0], found


def test_the_page_test_passes_math_code_and_live_links(tmp_path):
    (tmp_path / "next.html").write_text(PAGE.format("next"))
    page = tmp_path / "page.html"
    page.write_text(PAGE.format('<p><math><mi>η</mi></math> and <code>\\eta_t</code> '
                                '<a href="next.html#top">next</a> <a href="https://arxiv.org/abs/1506.01186">paper</a>'
                                '<img src="data:image/png;base64,AAAA"></p>'))
    assert pages.check([tmp_path]) == []


def test_the_page_test_reads_the_files_a_style_sheet_names(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(PAGE.format('<link rel="stylesheet" href="style.0123456789ab.css">'))
    sheet = tmp_path / "style.0123456789ab.css"
    sheet.write_text("a { background: url(data:image/svg+xml;base64,AAAA) } b { background: url('fonts/a.woff') }")
    assert "not there: fonts/a.woff" in pages.check([page])[0]
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "a.woff").write_text("")
    assert pages.check([page]) == []
    sheet.write_text("b { background: url(/usr/share/fonts/a.woff) }")
    assert "absolute path" in pages.check([page])[0]


def _store(folder: Path, runs: list[tuple[str, str, int]]) -> None:
    (folder / "runs").mkdir(parents=True)
    for run_id, device, seed in runs:
        (folder / "runs" / f"{run_id}.json").write_text(json.dumps(
            {"id": run_id, "notebook": "clr_cifar10", "config": {"seed": seed}, "environment": {"device": device}}))


def _box(devices: str, seeds: str, ids: str) -> str:
    return f'<div class="lrstudy-summary" data-ran-devices="{devices}" data-ran-seeds="{seeds}" data-run-ids="{ids}"></div>'


def test_a_header_must_agree_with_the_records_it_names(tmp_path):
    _store(tmp_path, [("a1", "CPU: AMD EPYC (1 threads)", 1), ("a2", "CPU: AMD EPYC (1 threads)", 2)])
    page = tmp_path / "clr_cifar10.html"
    page.write_text(PAGE.format(_box("CPU: AMD EPYC (1 threads)", "1,2", "a1 a2")))
    assert pages.check([page]) == []
    page.write_text(PAGE.format(_box("cuda", "1,2,3,4,5", "a1 a2")))
    found = pages.check([page])
    assert any("devices" in p for p in found) and any("seeds" in p for p in found)
    page.write_text(PAGE.format(_box("CPU: AMD EPYC (1 threads)", "1,2", "a1 a2").replace(
        "></div>", ">Planned: 5 seeds on a CUDA GPU.</div>")))
    assert "every run it names trained on a CPU" in pages.check([page])[0]
    page.write_text(PAGE.format(_box("CPU: AMD EPYC (1 threads)", "1,2", "a1 a2 zz")))
    assert "not in the store" in pages.check([page])[0]
    page.write_text(PAGE.format("<p>One CUDA GPU, float32, five seeds.</p>"))
    assert "no summary box" in pages.check([page])[0]


def test_the_progress_bar_has_nowhere_to_go_without_a_terminal(monkeypatch):
    """Under `make reproduce` the kernel forwards its stderr into the notebook; without a terminal
    to write to, the bar is off rather than on the page."""
    monkeypatch.setenv("LRSTUDY_PROGRESS", "terminal")
    real_open = open

    def no_tty(path, *args, **kwargs):
        if path == "/dev/tty":
            raise OSError("no controlling terminal")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_tty)
    assert ledger.progress_stream() is ledger.NO_BAR


# ---------------------------------------------------------------- a training notebook, end to end


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "papermill").exists(), reason="needs the project's .venv")
def test_a_smoke_training_notebook_renders_pages_that_pass(tmp_path):
    """`make reproduce PROFILE=smoke` trains while rendering: its pages must pass the page test as
    the committed ones do -- no progress bar, no parameter cell, no machine path, a header that
    agrees with the records."""
    env = {**os.environ, "LRSTUDY_RESULTS": str(tmp_path), "LRSTUDY_PROGRESS": "terminal", "LRSTUDY_TRAIN": "yes",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "smoke"
    out.mkdir()
    executed = out / "clr_range_test.ipynb"
    subprocess.run([str(ROOT / ".venv" / "bin" / "papermill"), "-k", "python3", "--cwd", str(ROOT / "notebooks"),
                    "-p", "profile", "smoke", str(ROOT / "notebooks" / "clr_range_test.ipynb"), str(executed)],
                   check=True, capture_output=True, timeout=900, env=env, stdin=subprocess.DEVNULL,
                   start_new_session=True)
    subprocess.run([sys.executable, "-m", "lrstudy.pages", "render", str(executed)], check=True, env=env,
                   capture_output=True, timeout=300)
    assert (out / "clr_range_test.reader.html").exists()
    assert pages.check([out]) == []
    assert "injected-parameters" not in executed.read_text()


def test_every_committed_page_passes_the_page_test():
    """Every page under results/ (re-rendered with `make reproduce TRAIN=no` after a change to the
    notebooks or to lrstudy.pages) passes the page test."""
    problems = pages.check([ROOT / "results"])
    assert problems == [], "\n".join(problems[:20]) + f"\n({len(problems)} problems)"


def test_the_seed_strip_plot_draws_the_same_figure_on_every_render():
    """A page re-rendered from the same runs keeps its figure file: the strip plot's jitter is
    seeded, and the caller's random state is left as it was."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    from lrstudy.plots import plot_final

    runs = pd.DataFrame({"setting": ["a"] * 3 + ["b"] * 3, "status": ["finished"] * 6,
                         "final_test_acc": [77.1, 77.9, 78.3, 75.0, 75.4, 76.2]})

    def png() -> bytes:
        buffer = io.BytesIO()
        plot_final(runs).savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()

    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    first = png()
    assert np.random.random() == expected_next
    assert png() == first
