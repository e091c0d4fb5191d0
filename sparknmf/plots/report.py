"""Static HTML reports: figures as PNG/SVG files next to the page, measures as tables, parameters and timings.

A report is a folder: ``index.html`` plus the image files it shows.  The page
has no JavaScript and no external stylesheet, font or script, so it opens
offline in any browser and can be archived or served as it is; every link is
relative and points to a file that exists when the page is written
(:meth:`Report.write` checks).

    report = Report("out/report", "Rank survey of V")
    report.add_parameters({"k": "2-6", "nrun": 30, "algorithm": "bpp"})
    report.add_figure("survey", survey_plot(survey))     # writes out/report/survey.png
    report.add_table("Measures", survey)                 # a Survey, a list of dicts or a dict
    report.add_timings({"survey": 71.7})
    report.write()                                        # out/report/index.html

:func:`write_report` assembles the usual report of a fit and/or a rank
survey in one call.  Tables need nothing beyond the standard library;
figures need the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path

__all__ = ["Report", "write_report"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IMAGE_SUFFIXES = (".png", ".svg")
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
"""


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _table_rows(rows):
    """(columns, list of dicts) from a Survey, a list of dicts or a dict (name → value)."""
    rows = getattr(rows, "rows", rows)
    if isinstance(rows, dict):
        rows = [{"name": key, "value": value} for key, value in rows.items()]
    rows = list(rows)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("a report table needs a non-empty dict, list of dicts or Survey")
    columns: dict = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns), rows


class Report:
    """A static HTML page being assembled in ``folder`` (see the module docstring).

    Parameters
    ----------
    folder : path
        Created if missing; figures are written into it.
    title : str
    formats : sequence of {"png", "svg"}
        Files written per figure; the first is shown on the page, the others linked.
    """

    def __init__(self, folder, title: str = "sparknmf report", *, formats=("png",)):
        formats = tuple(formats)
        if not formats or any(f not in ("png", "svg") for f in formats) or len(set(formats)) != len(formats):
            raise ValueError(f"formats must be distinct values among ('png', 'svg'), got {formats!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.title = str(title)
        self.formats = formats
        self._parts: list = []
        self._names: set = set()

    # ------------------------------------------------------------ content
    def add_text(self, text: str, heading: str | None = None) -> None:
        """A paragraph, optionally under a heading."""
        self._heading(heading)
        self._parts.append(("html", f"<p>{html.escape(str(text))}</p>"))

    def add_figure(self, name: str, figure, caption: str = "") -> list[Path]:
        """A figure: a matplotlib Figure (saved as ``name.<format>`` in the folder) or an existing PNG/SVG file.

        Returns the files the page will link to.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"figure name must be a plain file stem (letters, digits, '_', '-', '.'), got {name!r}")
        if name in self._names:
            raise ValueError(f"the report already has a figure named {name!r}")
        if hasattr(figure, "savefig"):
            from sparknmf.plots import save_figure

            paths = [save_figure(figure, self.folder / f"{name}.{fmt}") for fmt in self.formats]
        else:
            path = Path(figure)
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                raise ValueError(f"a report image must be a .png or .svg file, got {str(path)!r}")
            if not path.is_file():
                raise FileNotFoundError(f"report figure {name!r}: no such file {str(path)!r}")
            paths = [path]
        self._names.add(name)
        self._parts.append(("figure", name, paths, str(caption)))
        return paths

    def add_table(self, title: str, rows, columns=None) -> None:
        """A table under a heading: a dict (two columns, name and value), a list of dicts, or a Survey.

        ``columns`` selects and orders the columns (default: every key, first seen first).
        """
        names, rows = _table_rows(rows)
        if columns is not None:
            unknown = [c for c in columns if c not in names]
            if unknown:
                raise ValueError(f"table {title!r} has no columns {unknown}; it has {names}")
            names = list(columns)
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in names)
        body = "\n".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in names) + "</tr>"
                         for row in rows)
        self._heading(title)
        self._parts.append(("html", f"<table>\n<tr>{head}</tr>\n{body}\n</table>"))

    def add_parameters(self, parameters: dict) -> None:
        """The settings of the job, as a name/value table."""
        self.add_table("Parameters", parameters)

    def add_timings(self, timings: dict) -> None:
        """Wall-clock seconds per step, as a name/seconds table."""
        self.add_table("Timings", [{"step": key, "seconds": float(value)} for key, value in timings.items()])

    def add_fit(self, fit, *, labels=None, features=None, dpi: int = 100, suffix: str = "", heading=None) -> None:
        """The figures of one fit: clustering summary and consensus map (multi-start fits), basis and
        coefficient maps, objective history.

        Parameters
        ----------
        fit : MultiFit, MultiStartNMFModel, FitResult or NMFModel
        labels, features :
            As :func:`write_report`.
        dpi : int
        suffix : str
            Appended to the figure names (``consensus_k3``), so that several fits share one report.
        heading : str, optional
            A heading above them.
        """
        from sparknmf import plots

        self._heading(heading)
        runs = getattr(fit, "runs", fit)
        if hasattr(runs, "summary") and hasattr(runs, "assignments"):
            self.add_table("Clustering summary", runs.summary(labels))
            self.add_figure(f"consensus{suffix}", plots.consensus_map(runs, labels=labels, dpi=dpi),
                            f"Consensus of {runs.nrun} runs, ordered by average linkage on 1 − C.")
        self.add_figure(f"basis{suffix}", plots.basis_map(fit, features=features, dpi=dpi),
                        "Basis W, features clustered.")
        self.add_figure(f"coefficients{suffix}", plots.coef_map(fit, labels=labels, dpi=dpi),
                        "Coefficients H, samples clustered.")
        self.add_figure(f"history{suffix}", plots.history_plot(fit, dpi=dpi), "Objective by iteration (best run).")

    def _heading(self, heading):
        if heading:
            self._parts.append(("html", f"<h2>{html.escape(str(heading))}</h2>"))

    # ------------------------------------------------------------ output
    def _link(self, path: Path) -> str:
        return html.escape(Path(os.path.relpath(path.resolve(), self.folder.resolve())).as_posix(), quote=True)

    def _figure_html(self, name, paths, caption):
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"report figure {name!r} links to missing files: {missing}")
        shown = self._link(paths[0])
        others = " ".join(f'<a href="{self._link(p)}">{html.escape(p.suffix[1:].upper())}</a>' for p in paths[1:])
        text = html.escape(caption) + (f" ({others})" if others else "")
        return (f'<figure id="{html.escape(name)}"><a href="{shown}"><img src="{shown}" alt="{html.escape(name)}">'
                f"</a><figcaption>{text}</figcaption></figure>")

    def write(self, name: str = "index.html") -> Path:
        """Write the page into the folder; returns its path.  Every linked file must exist."""
        parts = [part[1] if part[0] == "html" else self._figure_html(*part[1:]) for part in self._parts]
        page = "\n".join([
            "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
            f"<h1>{html.escape(self.title)}</h1>", *parts, "</body>", "</html>", "",
        ])
        path = self.folder / name
        path.write_text(page, encoding="utf-8")
        return path


def write_report(folder, *, fit=None, survey=None, labels=None, features=None, parameters=None, timings=None,
                 title: str = "sparknmf report", formats=("png",), dpi: int = 100, fits=None, measures=None) -> Path:
    """The usual report of a fit and/or a rank survey, written to ``folder/index.html``.

    Parameters
    ----------
    folder : path
    fit : MultiFit, MultiStartNMFModel, FitResult or NMFModel, optional
        Multi-start fits give the clustering summary and a consensus map;
        every fit gives basis and coefficient maps and the objective history.
    survey : Survey, optional
        :func:`sparknmf.rank_survey`'s table: the survey plot and the table.
    labels : sequence, optional
        Known class of each sample (purity, entropy and a labels track).
    features : sequence of str, optional
        Names of the features (rows of V) for the basis map.
    parameters, timings : dict, optional
        Job settings; seconds per step.
    fits : dict, optional
        More fits by name (e.g. ``{"k = 3": fit}`` for each rank of a survey),
        each shown like ``fit`` under its name as a heading.
    measures : sequence of str, optional
        Panels of the survey plot (:func:`sparknmf.plots.survey_plot`; default all).
    title, formats :
        As :class:`Report`.
    dpi : int
        Resolution of the figures.

    Returns
    -------
    Path of the page.
    """
    if fit is None and survey is None and not fits:
        raise ValueError("write_report needs a fit, a survey or both")
    from sparknmf import plots

    plots.require_matplotlib()
    report = Report(folder, title, formats=formats)
    if parameters:
        report.add_parameters(parameters)
    if survey is not None:
        report.add_figure("survey", plots.survey_plot(survey, measures=measures, dpi=dpi, title=title),
                          "Every measure against k; dashed: the same survey on randomised data.")
        report.add_table("Rank survey", survey)
    if fit is not None:
        report.add_fit(fit, labels=labels, features=features, dpi=dpi)
    for number, (name, other) in enumerate((fits or {}).items(), 1):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "", str(name)) or str(number)  # "k = 3" -> basis_k3.png
        report.add_fit(other, labels=labels, features=features, dpi=dpi, suffix=f"_{stem}", heading=str(name))
    if timings:
        report.add_timings(timings)
    return report.write()
