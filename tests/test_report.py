"""Static HTML report: links only to files that exist, no scripts, tables, bad input, the job's --report."""

import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sparknmf import multistart
from sparknmf.analysis.survey import rank_survey
from sparknmf.datasets import block_diagonal
from sparknmf.plots.report import Report, write_report


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("href", "src")]


def check_page(path: Path):
    """Every href/src is a relative link to an existing file; no scripts, no external resources."""
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    assert "script" not in parser.tags and "link" not in parser.tags
    for link in parser.links:
        assert "://" not in link and not link.startswith("/"), link
        assert (path.parent / link).is_file(), f"{link} does not exist"
    return parser.links


@pytest.fixture(scope="module")
def small():
    V, labels = block_diagonal((6, 6), features=10, seed=3)
    return V, labels, multistart(V, 2, nrun=3, mode="local", seed=0)


def test_report_links_only_to_existing_files(tmp_path, small):
    pytest.importorskip("matplotlib")
    from sparknmf import plots

    V, labels, fit = small
    image = tmp_path / "elsewhere" / "given.png"
    plots.history_plot(fit, dpi=30, save=image)
    report = Report(tmp_path / "report", "A <test> report", formats=("png", "svg"))
    report.add_parameters({"k": 2, "nrun": 3, "tol": 1e-4})
    paths = report.add_figure("consensus", plots.consensus_map(fit, labels=labels, dpi=30), "Consensus & co")
    assert [p.name for p in paths] == ["consensus.png", "consensus.svg"]
    report.add_figure("given", image, "made elsewhere")
    report.add_table("Summary", fit.summary(labels))
    report.add_timings({"fit": 1.5})
    report.add_text("Samples are the columns of V.", heading="Notes")
    page = report.write()
    links = check_page(page)
    assert set(links) == {"consensus.png", "consensus.svg", "../elsewhere/given.png"}
    text = page.read_text()
    assert "A &lt;test&gt; report" in text and "Consensus &amp; co" in text and "<th>seconds</th>" in text
    assert "<td>cophenetic</td>" in text


def test_write_refuses_a_link_to_a_file_that_disappeared(tmp_path, small):
    pytest.importorskip("matplotlib")
    from sparknmf import plots

    report = Report(tmp_path)
    report.add_figure("history", plots.history_plot(small[2], dpi=30))
    (tmp_path / "history.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"links to missing files: .*history\.png"):
        report.write()
    assert not (tmp_path / "index.html").exists()


@pytest.mark.parametrize("call, error, match", [
    (lambda r: r.add_figure("a", "missing.png"), FileNotFoundError, "no such file"),
    (lambda r: r.add_figure("a", "picture.jpg"), ValueError, r"\.png or \.svg"),
    (lambda r: r.add_figure("../a", "x.png"), ValueError, "plain file stem"),
    (lambda r: r.add_table("t", []), ValueError, "non-empty dict"),
    (lambda r: r.add_table("t", [{"a": 1}], columns=["b"]), ValueError, r"no columns \['b'\]"),
])
def test_report_bad_input(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(Report(tmp_path))


def test_report_duplicate_figure_and_formats(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    report = Report(tmp_path)
    report.add_figure("x", tmp_path / "x.png")
    with pytest.raises(ValueError, match="already has a figure named 'x'"):
        report.add_figure("x", tmp_path / "x.png")
    with pytest.raises(ValueError, match="formats must be"):
        Report(tmp_path, formats=("jpg",))


def test_tables_need_no_matplotlib(tmp_path, monkeypatch, small):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = Report(tmp_path)
    report.add_table("Rows", [{"k": 2, "value": float("nan")}, {"k": 3, "value": None}])
    page = report.write("tables.html")
    assert "<td>NaN</td>" in page.read_text() and check_page(page) == []
    with pytest.raises(ImportError, match=r'pip install "sparknmf\[plot\]"'):
        write_report(tmp_path / "r", fit=small[2])


def test_write_report_of_a_fit_and_a_survey(tmp_path, small):
    pytest.importorskip("matplotlib")
    V, labels, fit = small
    survey = rank_survey(V, [2, 3], nrun=2, labels=labels, mode="local")
    page = write_report(tmp_path, fit=fit, survey=survey, labels=labels, parameters={"k": 2}, timings={"fit": 0.1},
                        dpi=30)
    assert set(check_page(page)) == {"survey.png", "consensus.png", "basis.png", "coefficients.png", "history.png"}
    text = page.read_text()
    for heading in ("Parameters", "Rank survey", "Clustering summary", "Timings"):
        assert f"<h2>{heading}</h2>" in text
    single = write_report(tmp_path / "single", fit=fit.best, dpi=30)
    assert "consensus.png" not in check_page(single)
    with pytest.raises(ValueError, match="needs a fit, a survey or both"):
        write_report(tmp_path / "none")


def test_write_report_of_several_fits_and_chosen_panels(tmp_path, small):
    pytest.importorskip("matplotlib")
    V, labels, fit = small
    survey = rank_survey(V, [2, 3], nrun=2, labels=labels, mode="local")
    other = multistart(V, 3, nrun=2, mode="local", seed=0)
    page = write_report(tmp_path, survey=survey, fits={"k = 2": fit, "k = 3": other}, labels=labels,
                        measures=["purity", "entropy", "dispersion"], dpi=30)
    assert set(check_page(page)) == {"survey.png"} | {f"{name}_k{k}.png" for k in (2, 3) for name in
                                                      ("consensus", "basis", "coefficients", "history")}
    assert "<h2>k = 3</h2>" in page.read_text()
