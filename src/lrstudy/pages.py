"""The study's rendered pages: how an executed notebook becomes its pages, and the test every page
must pass.

``render`` turns ``results/<profile>/<name>.ipynb`` (as papermill left it) into ``<name>.html`` and a
reader's ``<name>.reader.html`` without code cells: the parameter cells go (the data is named by its
label in the page's summary box, never by a path of the machine that ran it), stray progress-bar
lines go, formulas become MathML at build time (no MathJax from a CDN: a page reads the same
offline), and every page gets a bar linking its index, its neighbours and its other render.

A page's figures and its style sheet are files beside it, not base64 and ``<style>`` copies inside
it (the executed notebook keeps its figures, as the canonical copy): both renders of ``<name>``
show the same ``<name>_files/<hash>.png``, and every page of a folder links the one
``style.<hash>.css``. Names are content hashes, so a re-render that changes a figure or the
style sheet adds a file instead of changing one an older page still shows; files no page links
any more go (:func:`prune_assets`, which only ever deletes files named as render names them).

``check`` is the page test: it fails a page on a truncated table, raw TeX outside a math node, a
machine path, a progress-bar line, a dead relative link or asset (a style sheet's ``url()`` too),
an absolute path, a script or style sheet fetched from the network, a figure or style sheet
embedded whole, and a summary box whose devices or seeds disagree with the run records it names.

    python -m lrstudy.pages render results/cpu/clr_cifar10.ipynb
    python -m lrstudy.pages link results/cpu
    python -m lrstudy.pages check results/            # every page under results/, exit 1 on a problem
    python -m lrstudy.pages screenshot results/ OUT   # headless Chromium, network off, where installed
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from .files import atomic_write
from .provenance import names_a_cpu

__all__ = ["clean_notebook", "tex_to_mathml", "render", "link", "check", "check_page", "screenshot", "stored_records",
           "page_assets", "prune_assets", "PAGE_ORDER"]

# The pages of a profile in the order a reader meets them (the Makefile's NOTEBOOKS order).
PAGE_ORDER = ("schedules", "clr_range_test", "clr_cifar10", "clr_adaptive", "clr_architectures", "sgdr",
              "super_convergence", "scorecard")
READER = ".reader"  # <name>.reader.html: the same page without code cells
PARAMETER_TAGS = {"parameters", "injected-parameters"}

# A tqdm bar ("45%|####  | 450/1000 [00:02<00:03, 150.2it/s]") or its rate alone.
PROGRESS = re.compile(r"\d+%\|[^\n]*\||\d[\d.]*\s?(?:it/s|s/it)\b|[█▏▎▍▌▋▊▉]{2,}")
# Folders of a machine: absolute home, work and scratch folders, or a climb out of the results tree.
MACHINE_PATH = re.compile(r"(?<![\w.:/])/(?:work|home|tmp|root|Users|mnt|scratch)/|(?:\.\./){2,}")
# TeX a reader should never see: a control word, or $...$ holding a sub- or superscript.
RAW_TEX = re.compile(r"\\[a-zA-Z]{2,}|\$[^$\s][^$]*[_^][^$]*\$")
# pandas' marks of a cut table: a "..." cell, or the "[70 rows x 10 columns]" footer
TRUNCATED_CELL = {"...", "…"}
TRUNCATED_FOOTER = re.compile(r"\d+ rows [×x] \d+ columns")

# The files render writes beside a page, named by their content: <name>_files/<16 hex>.png|.jpeg
# (figures) and style.<12 hex>.css (the template's style sheet, one per folder).
FIGURE_TYPES = {"image/png": "png", "image/jpeg": "jpeg"}
FIGURE_FILE = re.compile(r"[0-9a-f]{16}\.(?:png|jpeg)")
STYLE_FILE = re.compile(r"style\.[0-9a-f]{12}\.css")
# The relative files a page loads: images, style sheets, scripts (not the pages it links to).
ASSET_REF = re.compile(r"<(?:img|link|script)\b[^>]*?\s(?:src|href)=\"([^\"]+)\"", re.I)
STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>\s*", re.S | re.I)
# Above these, a figure or a style sheet inside a page is one render forgot to write as a file.
EMBEDDED_FIGURE_LIMIT, EMBEDDED_STYLE_LIMIT = 8_000, 20_000


# ---------------------------------------------------------------- cleaning an executed notebook


def clean_notebook(nb: dict) -> dict:
    """The executed notebook a page is made from: without its parameter cells (papermill's injected
    cell names the data by a path of the machine that ran it) and without progress-bar lines in its
    outputs. Changes ``nb`` in place and returns it."""
    nb["cells"] = [c for c in nb["cells"] if not PARAMETER_TAGS & set(c.get("metadata", {}).get("tags", []))]
    for cell in nb["cells"]:
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = "".join(out.get("text", ""))
                kept = [line for line in re.split(r"(?<=\n)|\r", text) if line.strip() and not PROGRESS.search(line)]
                if not kept:
                    continue
                out["text"] = "".join(line if line.endswith("\n") else line + "\n" for line in kept)
            outputs.append(out)
        if cell.get("cell_type") == "code":
            cell["outputs"] = outputs
    return nb


MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\$)", re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def tex_to_mathml(markdown: str) -> str:
    """A markdown cell with its ``$...$`` and ``$$...$$`` formulas replaced by MathML, which browsers
    draw without a script; code spans are left alone."""
    from latex2mathml.converter import convert

    def formula(match: re.Match) -> str:
        display, inline = match.group(1), match.group(2)
        tex = display if display is not None else inline
        try:
            mathml = convert(tex.strip(), display="block" if display is not None else "inline")
        except Exception:  # noqa: BLE001 -- left as TeX, which the page test then reports
            return match.group(0)
        return mathml.replace("\n", "").replace("|", "&#124;")

    parts, last = [], 0
    for code in CODE_SPAN.finditer(markdown):
        parts.append(MATH.sub(formula, markdown[last:code.start()]))
        parts.append(code.group(0))
        last = code.end()
    parts.append(MATH.sub(formula, markdown[last:]))
    return "".join(parts)


# ---------------------------------------------------------------- rendering


def render(notebook: Path) -> list[Path]:
    """``<name>.html`` and ``<name>.reader.html`` beside an executed notebook, which is cleaned in
    place first (see :func:`clean_notebook`), with their figures in ``<name>_files/`` and the
    style sheet in ``style.<hash>.css``; then the folder's navigation is renewed. The files a page
    links are written before the page, so a render that fails leaves no page without them."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    folder = notebook.parent
    nb = nbformat.reads(notebook.read_text(), as_version=4)
    clean_notebook(nb)
    notebook.write_text(nbformat.writes(nb))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = tex_to_mathml(cell.source)
    _figures_to_files(nb, folder, notebook.stem)
    pages = {}
    for suffix, reader in (("", False), (READER, True)):
        exporter = HTMLExporter(template_name="lab", exclude_input=reader, exclude_input_prompt=reader,
                                exclude_output_prompt=reader)
        body, _ = exporter.from_notebook_node(nb)
        pages[notebook.with_name(notebook.stem + suffix + ".html")] = _style_to_file(_offline(body), folder)
    for path, page in pages.items():
        _write_file(path, page.encode())
    prune_assets(folder, notebook.stem)
    link(folder)
    return list(pages)


def _write_file(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (readers see the old one or the new one); a file that
    already holds ``data`` is left alone (content-named assets are written once)."""
    if path.exists() and path.read_bytes() == data:
        return
    atomic_write(path, data)


def _figures_to_files(nb, folder: Path, name: str) -> None:
    """Write each figure output of ``nb`` once, to ``<name>_files/<hash>.<ext>`` beside the page,
    and point the output at it (the HTML template then links the file instead of inlining it)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for mime, ext in FIGURE_TYPES.items():
                if mime not in output.get("data", {}):
                    continue
                data = base64.b64decode(output["data"][mime])
                relative = f"{name}_files/{hashlib.sha256(data).hexdigest()[:16]}.{ext}"
                _write_file(folder / relative, data)
                output.setdefault("metadata", {}).setdefault("filenames", {})[mime] = relative


def _style_to_file(page: str, folder: Path) -> str:
    """A page whose ``<head>`` style blocks (the template's ~270 kB style sheet, the same for every
    page) are one linked ``style.<hash>.css`` in ``folder``, in their order."""
    head_end = page.find("</head>")
    head = page[:head_end]
    blocks = STYLE_BLOCK.findall(head)
    if head_end < 0 or not blocks:
        return page
    css = "\n".join(blocks).encode()
    style = f"style.{hashlib.sha256(css).hexdigest()[:12]}.css"
    _write_file(folder / style, css)
    first = STYLE_BLOCK.search(head)
    head = (head[:first.start()] + f'<link rel="stylesheet" href="{style}">\n'
            + STYLE_BLOCK.sub("", head[first.start():]))
    return head + page[head_end:]


def page_assets(page: Path) -> list[str]:
    """The files a page loads (figures, style sheets, scripts), as the relative paths it names
    them by; links to other pages, data URIs and network addresses are not among them."""
    try:
        text = Path(page).read_text(errors="replace")
    except OSError:
        return []
    found = []
    for target in ASSET_REF.findall(text):
        local = target.split("#", 1)[0].split("?", 1)[0]
        if local and not re.match(r"[a-z][a-z0-9+.-]*:|//", local, re.I) and local not in found:
            found.append(local)
    return found


def prune_assets(folder: Path, name: str) -> list[Path]:
    """Delete the figures in ``<name>_files/`` that neither render of ``<name>`` links, and the
    folder's style sheets that no page links -- only files named as render names them, so nothing
    another tool put there. Returns what went."""
    folder = Path(folder)
    linked = {(folder / target).resolve() for page in folder.glob("*.html") for target in page_assets(page)}
    candidates = [f for f in (folder / f"{name}_files").glob("*") if FIGURE_FILE.fullmatch(f.name)]
    candidates += [f for f in folder.glob("style.*.css") if STYLE_FILE.fullmatch(f.name)]
    gone = [f for f in candidates if f.resolve() not in linked]
    for path in gone:
        path.unlink()
    if (folder / f"{name}_files").is_dir() and not any((folder / f"{name}_files").iterdir()):
        (folder / f"{name}_files").rmdir()
    return gone


def _offline(page: str) -> str:
    """A page with nothing fetched from the network: the template's MathJax loader goes (formulas
    are MathML already), and so does any other script from a CDN."""
    page = re.sub(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", "", page)
    # the template's module script that imports mermaid from a CDN (for diagrams, which no page has)
    page = re.sub(r"<script\b[^>]*>(?:(?!</script>).)*?import\(\"https?://.*?</script>", "", page, flags=re.S)
    page = re.sub(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", "", page, flags=re.S)
    return page


NAV_START, NAV_END = "<!-- lrstudy-nav -->", "<!-- /lrstudy-nav -->"
NAV_STYLE = ("font:14px system-ui,sans-serif;padding:0.5em 1em;margin:0 0 1em;background:#eef3f7;"
             "border-bottom:1px solid #cdd")


def _pages(folder: Path) -> list[str]:
    there = {p.stem for p in folder.glob("*.html")}
    return [name for name in PAGE_ORDER if name in there]


def link(folder: Path) -> None:
    """Give every page of a profile's folder one navigation bar: its index, the previous and the next
    page (in :data:`PAGE_ORDER`, among those rendered), and its other render. Idempotent."""
    folder = Path(folder)
    pages = _pages(folder)
    for i, name in enumerate(pages):
        for suffix in ("", READER):
            path = folder / f"{name}{suffix}.html"
            if not path.exists():
                continue
            items = ['<a href="index.html">&uarr; index</a>' if (folder / "index.html").exists() else ""]
            if i > 0:
                items.append(f'<a href="{pages[i - 1]}{suffix}.html">&larr; {pages[i - 1]}</a>')
            if i + 1 < len(pages):
                items.append(f'<a href="{pages[i + 1]}{suffix}.html">{pages[i + 1]} &rarr;</a>')
            twin = f"{name}{READER if not suffix else ''}.html"
            if (folder / twin).exists():
                items.append(f'<a href="{twin}">{"with code" if suffix else "without code (reader)"}</a>')
            bar = (f'{NAV_START}<nav class="lrstudy-nav" style="{NAV_STYLE}">'
                   + " &middot; ".join(item for item in items if item) + f"</nav>{NAV_END}")
            text = path.read_text()
            if NAV_START in text:
                text = re.sub(re.escape(NAV_START) + ".*?" + re.escape(NAV_END), lambda _: bar, text, flags=re.S)
            else:
                text = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + bar, text, count=1)
            path.write_text(text)


def index_navigation(folder: Path, profile: str) -> str:
    """A profile index's bar: the other profiles' indexes beside it and the profile's README."""
    folder = Path(folder)
    others = sorted(p.parent.name for p in folder.parent.glob("*/index.html") if p.parent.name != profile)
    items = [f'<a href="../{name}/index.html">profile {name}</a>' for name in others]
    if (folder / "README.md").exists():
        items.append('<a href="README.md">how these runs were trained (README.md)</a>')
    return (f'{NAV_START}<nav class="lrstudy-nav" style="{NAV_STYLE}">' + " &middot; ".join(items)
            + f"</nav>{NAV_END}") if items else ""


# ---------------------------------------------------------------- the page test


def stored_records(folder: Path) -> dict[str, dict]:
    """The run records stored beside a profile's pages, by run id."""
    out = {}
    for path in (folder / "runs").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "id" in record and "config" in record:
            out[record["id"]] = record
    return out


def _visible_text(soup) -> Iterable[tuple[str, object]]:
    """Text nodes a reader sees as prose (not math, code, scripts or styles)."""
    skip = {"math", "script", "style", "code", "pre", "textarea", "svg"}
    for node in soup.find_all(string=True):
        if not any(parent.name in skip for parent in node.parents):
            yield str(node), node


def check_page(page: Path, records: dict[str, dict] | None = None) -> list[str]:
    """Every problem of one page, as lines "page: problem" (none: the page passes)."""
    from bs4 import BeautifulSoup

    page = Path(page)
    text = page.read_text(errors="replace")
    soup = BeautifulSoup(text, "html.parser")
    problems: list[str] = []

    def problem(what: str) -> None:
        problems.append(f"{page}: {what}")

    for table in soup.find_all("table"):
        if any(cell.get_text(strip=True) in TRUNCATED_CELL for cell in table.find_all(["td", "th"])):
            problem("a truncated table (a '...' cell)")
            break
    everything = soup.get_text(" ")
    if TRUNCATED_FOOTER.search(everything):
        problem(f"a truncated table ({TRUNCATED_FOOTER.search(everything).group(0)})")
    for pre in soup.find_all("pre"):
        if re.search(r"^\s*\.\.\.\s", pre.get_text(), re.M) and re.search(r"\n.*\.\.\..*\n", pre.get_text()):
            if TRUNCATED_FOOTER.search(pre.get_text()):
                problem("a truncated table in a text output")
    for string, _ in _visible_text(soup):
        match = RAW_TEX.search(string)
        if match:
            problem(f"raw TeX outside a math node: {match.group(0)!r} in {string.strip()[:60]!r}")
            break
    for string in soup.find_all(string=True):
        if string.parent is not None and string.parent.name in ("script", "style"):
            continue
        match = MACHINE_PATH.search(string)
        if match:
            problem(f"a machine path: {string.strip()[:80]!r}")
            break
        match = PROGRESS.search(string)
        if match:
            problem(f"a progress-bar line: {string.strip()[:80]!r}")
            break
    for tag, attribute in (("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")):
        for node in soup.find_all(tag):
            target = node.get(attribute)
            if not target or target.startswith(("data:", "#", "mailto:")):
                if (target or "").startswith("data:image/") and len(target) > EMBEDDED_FIGURE_LIMIT:
                    problem("a figure embedded in the page (render writes it to <name>_files/)")
                continue
            if MACHINE_PATH.search(target):
                problem(f"a machine path in a link: {target}")
            if _absolute(target):
                problem(f"an absolute path of the machine in a link: {target}")
                continue
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                if tag in ("script", "link") and target.startswith(("http:", "https:", "//")):
                    problem(f"fetches {target} from the network (a page must read the same offline)")
                continue
            local = target.split("#", 1)[0].split("?", 1)[0]
            if local and not (page.parent / local).exists():
                problem(f"a dead relative link: {target}")
    for style in soup.find_all("style"):
        if len(style.get_text()) > EMBEDDED_STYLE_LIMIT:
            problem("a style sheet embedded in the page (render links style.<hash>.css)")
            break
    for sheet in soup.find_all("link", rel="stylesheet"):
        problems += [f"{page}: {p}" for p in _check_style_sheet(page.parent, sheet.get("href") or "")]
    for script in soup.find_all("script"):
        imported = re.search(r"import\(\s*[\"'](https?://[^\"']+)", script.get_text())
        if imported:
            problem(f"imports {imported.group(1)} from the network (a page must read the same offline)")
    problems += _check_header(page, soup, stored_records(page.parent) if records is None else records)
    return problems


def _absolute(target: str) -> bool:
    """A link by an absolute path or file address, which reads only on the machine that wrote it."""
    return target.startswith(("/", "\\", "file:")) and not target.startswith("//") or bool(
        re.match(r"[a-z]:[\\/]", target, re.I))


def _check_style_sheet(folder: Path, href: str) -> list[str]:
    """The problems of a linked local style sheet: a ``url()`` naming an absolute path, or a file
    that does not exist (relative to the sheet)."""
    sheet = folder / href.split("#", 1)[0].split("?", 1)[0]
    if re.match(r"[a-z][a-z0-9+.-]*:|//", href, re.I) or not sheet.is_file():
        return []  # the network, or a dead link (reported with the page's links)
    problems = []
    for target in re.findall(r"url\(\s*['\"]?([^'\")]+)", sheet.read_text(errors="replace")):
        if target.startswith(("data:", "#")) or re.match(r"[a-z][a-z0-9+.-]*:|//", target, re.I) and \
                not target.startswith("file:"):
            continue
        if _absolute(target) or MACHINE_PATH.search(target):
            problems.append(f"{href} names an absolute path: {target}")
        elif not (sheet.parent / target.split("#", 1)[0].split("?", 1)[0]).exists():
            problems.append(f"{href} names a file that is not there: {target}")
    return problems


def _check_header(page: Path, soup, records: dict[str, dict]) -> list[str]:
    """The summary box's devices and seeds against the records of the runs it names; a page of a
    folder with runs for it must have a box."""
    name = page.name.split(".")[0]
    mine = {i: r for i, r in records.items() if r.get("notebook") == name} if name not in ("index", "scorecard") \
        else records
    boxes = soup.select("[data-run-ids]")
    if not boxes:
        return [f"{page}: no summary box saying what ran, although {len(mine)} runs are stored for it"] if mine else []
    problems = []
    for box in boxes:
        ids = box["data-run-ids"].split()
        missing = [i for i in ids if i not in records]
        if missing:
            problems.append(f"{page}: its summary box names runs that are not in the store: {', '.join(missing[:3])}")
            continue
        devices = sorted({records[i].get("environment", {}).get("device") or "?" for i in ids})
        seeds = sorted({int(records[i]["config"].get("seed", 0)) for i in ids})
        said_devices = sorted(d for d in box.get("data-ran-devices", "").split("|") if d)
        said_seeds = sorted(int(s) for s in box.get("data-ran-seeds", "").split(",") if s)
        if said_devices != devices:
            problems.append(f"{page}: the header says devices {said_devices}, the records {devices}")
        if said_seeds != seeds:
            problems.append(f"{page}: the header says seeds {said_seeds}, the records {seeds}")
        if all(names_a_cpu(d) for d in devices) and "CUDA" in box.get_text():
            problems.append(f"{page}: the header names CUDA, but every run it names trained on a CPU")
    return problems


def check(paths: Iterable[Path]) -> list[str]:
    """The problems of every page (``*.html``) under ``paths`` (folders or pages)."""
    pages: list[Path] = []
    for path in map(Path, paths):
        pages += sorted(path.rglob("*.html")) if path.is_dir() else [path]
    problems, cache = [], {}
    for page in pages:
        if "runs" in page.parts:
            continue
        folder = page.parent
        if folder not in cache:
            cache[folder] = stored_records(folder)
        problems += check_page(page, cache[folder])
    return problems


# ---------------------------------------------------------------- screenshots


def chromium() -> str | None:
    """The headless browser's command, where one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(pages: Iterable[Path], out: Path, width: int = 1280, height: int = 2400) -> list[Path]:
    """A PNG of each page in headless Chromium with the network off, into ``out`` (nothing where no
    Chromium is installed)."""
    browser = chromium()
    if browser is None:
        print("no chromium installed: no screenshots (apt-get install chromium)", file=sys.stderr)
        return []
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for page in map(Path, pages):
        png = out / f"{page.parent.name}-{page.stem}.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                        f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()],
                       capture_output=True, timeout=120, check=False)
        if png.exists():
            shots.append(png)
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrstudy.pages", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("render", help="an executed notebook's two pages").add_argument("notebook", type=Path)
    sub.add_parser("link", help="renew a folder's navigation").add_argument("folder", type=Path)
    sub.add_parser("check", help="the page test").add_argument("paths", type=Path, nargs="+")
    shot = sub.add_parser("screenshot", help="PNGs in headless Chromium, network off")
    shot.add_argument("folder", type=Path)
    shot.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "render":
        if not args.notebook.exists():
            parser.error(f"no executed notebook at {args.notebook}")
        for path in render(args.notebook):
            print(f"wrote {path}")
    elif args.command == "link":
        link(args.folder)
    elif args.command == "check":
        problems = check(args.paths)
        print("\n".join(problems) or "every page passes")
        return 1 if problems else 0
    else:
        pages = [p for p in sorted(args.folder.rglob("*.html")) if "runs" not in p.parts]
        shots = screenshot(pages, args.out)
        print(f"{len(shots)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
