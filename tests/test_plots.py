"""Plots: each renders to a PNG of the documented size that is not blank; orderings; bad input; missing extra."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from sparknmf import multistart, plots  # noqa: E402
from sparknmf.analysis import metrics  # noqa: E402
from sparknmf.analysis.survey import rank_survey  # noqa: E402
from sparknmf.datasets import block_diagonal  # noqa: E402
from sparknmf.decomposition.factorize import FitResult  # noqa: E402
from sparknmf.plots import maps  # noqa: E402

DPI = 40


def check_png(path, figsize, dpi=DPI):
    """The file exists, is figsize × dpi pixels and is not blank."""
    from matplotlib.image import imread

    assert path.is_file()
    pixels = imread(path)
    assert pixels.shape[:2] == (round(figsize[1] * dpi), round(figsize[0] * dpi))
    assert pixels[..., :3].var() > 1e-3, "the image is blank"


@pytest.fixture(scope="module")
def clustered():
    """A multi-start fit of a planted 3-cluster matrix (24 features × 30 samples), samples shuffled."""
    V, labels = block_diagonal((10, 12, 8), features=24, seed=1)
    perm = np.random.default_rng(3).permutation(V.shape[1])
    return multistart(V[:, perm], 3, nrun=6, mode="local", seed=1), labels[perm]


@pytest.fixture(scope="module")
def survey():
    V, labels = block_diagonal((6, 6, 6), features=12, seed=2)
    return rank_survey(V, [2, 3], nrun=3, labels=labels, mode="local", seed=0)


def planted_consensus(sizes, seed=0):
    """A noisy block-diagonal consensus (within 0.7-1, between 0-0.3), samples shuffled; returns (C, truth)."""
    rng = np.random.default_rng(seed)
    truth = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    same = truth[:, None] == truth[None, :]
    noise = rng.random((truth.size, truth.size)) * 0.3
    noise = (noise + noise.T) / 2
    C = np.where(same, 1.0 - noise, noise)
    np.fill_diagonal(C, 1.0)
    return C, truth


def contiguous(order, truth):
    """Each class occupies one unbroken run of the order."""
    along = np.asarray(truth)[order]
    runs = along[np.r_[True, along[1:] != along[:-1]]]
    return len(runs) == len(set(along))


# ---------------------------------------------------------------- rendering
def _renders(clustered, survey):
    fit, labels = clustered
    X = np.random.default_rng(0).random((40, 4))
    names = [f"item {i}" for i in range(40)]
    return {
        "consensus_map": lambda **kw: plots.consensus_map(fit, labels=labels, **kw),
        "basis_map": lambda **kw: plots.basis_map(fit, features=[f"f{i}" for i in range(24)], **kw),
        "coef_map": lambda **kw: plots.coef_map(fit, labels=labels, **kw),
        "survey_plot": lambda **kw: plots.survey_plot(survey, **kw),
        "factor_scatter": lambda **kw: plots.factor_scatter(X, (1, 2), names=names, annotate=10, **kw),
        "factor_dendrogram": lambda **kw: plots.factor_dendrogram(X[:15], names=names[:15], factors=[0, 1], **kw),
        "top_features": lambda **kw: plots.top_features(fit.W, n=5, **kw),
        "history_plot": lambda **kw: plots.history_plot(fit, **kw),
    }


PLOTS = ["consensus_map", "basis_map", "coef_map", "survey_plot", "factor_scatter", "factor_dendrogram",
         "top_features", "history_plot"]


@pytest.mark.parametrize("name", PLOTS)
def test_each_plot_saves_a_png_of_the_documented_size(name, clustered, survey, tmp_path):
    figsize = (6.0, 4.5)
    fig = _renders(clustered, survey)[name](figsize=figsize, dpi=DPI, save=tmp_path / f"{name}.png")
    assert fig.get_size_inches() == pytest.approx(figsize)
    check_png(tmp_path / f"{name}.png", figsize)


def test_default_sizes_are_documented(survey, tmp_path):
    # survey_plot: (3·ncols, 2.6·nrows + 0.4); 8 panels (labels given) in 4 columns
    plots.survey_plot(survey, dpi=DPI, save=tmp_path / "s.png")
    check_png(tmp_path / "s.png", (12.0, 5.6))
    # factor_dendrogram: (6, max(3, 0.17·s + 1))
    X = np.random.default_rng(1).random((30, 3))
    plots.factor_dendrogram(X, dpi=DPI, save=tmp_path / "d.png")
    check_png(tmp_path / "d.png", (6.0, 0.17 * 30 + 1.0))
    # top_features: (2.4·ncols, (0.2·n + 0.8)·nrows + 0.4)
    plots.top_features(X, n=5, dpi=DPI, save=tmp_path / "t.png")
    check_png(tmp_path / "t.png", (7.2, 2.2))
    # long names widen the panels (1.2 + 0.065·longest) and keep the figure within 15 inches
    names = [f"{i:02d} " + "x" * 57 for i in range(30)]  # 60 characters: 5.1-inch panels, 2 per row
    plots.top_features(X, names, n=5, dpi=DPI, save=tmp_path / "long.png")
    check_png(tmp_path / "long.png", (2 * (1.2 + 0.065 * 60), 2 * 1.8 + 0.4))


def test_svg_and_headless(clustered, tmp_path):
    fig = plots.coef_map(clustered[0], figsize=(4, 3), dpi=DPI, save=tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert type(fig.canvas).__name__ == "FigureCanvasAgg"  # no pyplot, no display


# ---------------------------------------------------------------- orderings
@pytest.mark.parametrize("sizes", [(5, 7, 9), (12, 3, 8, 6)])
def test_planted_consensus_clusters_are_contiguous_in_the_order(sizes, tmp_path):
    C, truth = planted_consensus(sizes, seed=len(sizes))
    order = plots.consensus_order(C)
    assert sorted(order) == list(range(C.shape[0]))
    assert contiguous(order, truth)
    fig = plots.consensus_map(C, k=len(sizes), labels=truth, figsize=(4, 4), dpi=DPI, save=tmp_path / "c.png")
    np.testing.assert_array_equal(fig.sparknmf["row_order"], order)
    np.testing.assert_array_equal(fig.sparknmf["col_order"], order)


def test_consensus_map_of_runs_uses_the_cophenetic_tree(clustered):
    from scipy.cluster.hierarchy import leaves_list

    fit, labels = clustered
    order = plots.consensus_order(fit)
    np.testing.assert_array_equal(order, leaves_list(metrics.consensus_linkage(fit.consensus().matrix)))
    assert contiguous(order, labels)


def test_basis_and_coef_maps_group_items_by_dominant_basis(clustered):
    fit, labels = clustered
    coef = plots.coef_map(fit, labels=labels, figsize=(4, 3), dpi=DPI)
    assert contiguous(coef.sparknmf["col_order"], labels)
    basis = plots.basis_map(fit, figsize=(4, 3), dpi=DPI)
    assert contiguous(basis.sparknmf["row_order"], fit.W.argmax(axis=1))


def test_large_matrices_are_downsampled_with_a_note():
    C, truth = planted_consensus((150, 100, 50), seed=4)
    fig = plots.consensus_map(C, k=3, max_cells=60, figsize=(4, 4), dpi=DPI)
    assert any("downsampled for display: 300×300 shown as 60×60" in note for note in fig.sparknmf["notes"])
    assert fig.sparknmf["row_order"].size == 300 and contiguous(fig.sparknmf["row_order"], truth)
    assert any(text.get_text().startswith("downsampled for display") for text in fig.texts)  # printed under it
    from matplotlib.collections import LineCollection

    drawn = [len(c.get_segments()) for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection)]
    assert sorted(drawn)[-2:] == [200, 200]  # both trees: the top 200 of 299 merges


def test_beyond_the_cluster_limit_items_are_ordered_by_dominant_basis(monkeypatch):
    monkeypatch.setattr(maps, "CLUSTER_LIMIT", 10)
    W = np.random.default_rng(5).random((40, 3))
    fig = plots.basis_map(W, figsize=(4, 3), dpi=DPI)
    order = fig.sparknmf["row_order"]
    assert contiguous(order, W.argmax(axis=1))
    assert any("not clustered" in note for note in fig.sparknmf["notes"])


def test_basis_map_subsets(clustered):
    W = clustered[0].W
    fig = plots.basis_map(W, subset=5, figsize=(4, 3), dpi=DPI)
    assert fig.sparknmf["row_order"].size == 5 and any("5 of 24 features" in n for n in fig.sparknmf["notes"])
    chosen = np.concatenate(metrics.extract_features(W, "max"))
    fig = plots.basis_map(W, subset="max", figsize=(4, 3), dpi=DPI)
    assert sorted(fig.sparknmf["row_order"]) == sorted(chosen)
    fig = plots.basis_map(W, subset=np.array([3, 1, 2]), figsize=(4, 3), dpi=DPI)
    assert sorted(fig.sparknmf["row_order"]) == [1, 2, 3]


def test_factor_scatter_drops_overlapping_labels():
    X = np.full((30, 2), 0.5) + np.random.default_rng(0).random((30, 2)) * 1e-3
    X[0] = (0.0, 0.0)
    fig = plots.factor_scatter(X, names=[f"a long movie title {i}" for i in range(30)], annotate=30,
                               figsize=(4, 3), dpi=DPI)
    labels = [t for t in fig.axes[0].texts]
    assert 1 <= len(labels) < 30
    assert any("labels left out to avoid overlaps" in n for n in fig.sparknmf["notes"])


def test_history_of_several_fits(tmp_path):
    fits = {"bpp": [10.0, 5.0, 4.0], "lee": FitResult(W=np.ones((2, 1)), H=np.ones((1, 2)), objective=3.0,
                                                       history=[10.0, 8.0, 6.0, 3.0])}
    fig = plots.history_plot(fits, figsize=(4, 3), dpi=DPI, save=tmp_path / "h.png")
    assert [line.get_label() for line in fig.axes[0].lines] == ["bpp", "lee"]
    assert fig.axes[0].get_yscale() == "log"
    check_png(tmp_path / "h.png", (4, 3))


# ---------------------------------------------------------------- bad input
def test_consensus_map_of_a_single_run_is_refused(clustered):
    fit = clustered[0]
    with pytest.raises(ValueError, match="single fit"):
        plots.consensus_map(fit.best)
    one = multistart(np.random.default_rng(0).random((6, 8)), 2, nrun=1, mode="local")
    with pytest.raises(ValueError, match="nrun=1"):
        plots.consensus_map(one)


@pytest.mark.parametrize("call, error, match", [
    (lambda: plots.consensus_map(np.ones((3, 4))), ValueError, "square"),
    (lambda: plots.consensus_map(np.full((3, 3), 2.0)), ValueError, r"in \[0, 1\]"),
    (lambda: plots.consensus_map(np.eye(3), labels=[0, 1]), ValueError, "2 entries but there are 3 samples"),
    (lambda: plots.consensus_map("fit"), TypeError, "expected a MultiFit"),
    (lambda: plots.basis_map(-np.ones((3, 2))), ValueError, "negative"),
    (lambda: plots.basis_map(np.ones(3)), ValueError, "2-D"),
    (lambda: plots.basis_map(np.ones((3, 2)), subset="best"), ValueError, "subset must be"),
    (lambda: plots.basis_map(np.ones((3, 2)), subset=np.array([5])), ValueError, "outside 0..2"),
    (lambda: plots.basis_map(np.ones((3, 2)), features=["a"]), ValueError, "1 entries for 3 items"),
    (lambda: plots.basis_map(np.ones((3, 2)), figsize=(0, 2)), ValueError, "figsize must be positive"),
    (lambda: plots.basis_map(np.ones((3, 2)), dpi=-1), ValueError, "dpi must be"),
    (lambda: plots.basis_map(np.ones((3, 2)), save="x.jpg"), ValueError, r"\.png"),
    (lambda: plots.coef_map(np.ones((2, 4)), labels=[1, 2]), ValueError, "2 entries but there are 4"),
    (lambda: plots.coef_map(np.full((2, 4), np.nan)), ValueError, "NaN"),
    (lambda: plots.survey_plot([]), ValueError, "non-empty list"),
    (lambda: plots.survey_plot([{"data": "randomized", "k": 2}]), ValueError, "no rows for the original"),
    (lambda: plots.survey_plot([{"data": "original", "k": 2, "cophenetic": 1.0}], measures=["purity"]),
     ValueError, "purity and entropy need labels"),
    (lambda: plots.survey_plot([{"data": "original", "k": 2}], measures=["speed"]), ValueError, "among"),
    (lambda: plots.factor_scatter(np.ones((4, 3)), (0, 0)), ValueError, "distinct integers in 0..2"),
    (lambda: plots.factor_scatter(np.ones((4, 3)), (0, 1, 2)), ValueError, "exactly two"),
    (lambda: plots.factor_scatter(np.ones((4, 3)), annotate=[7]), ValueError, "indices in 0..3"),
    (lambda: plots.factor_dendrogram(np.ones((1, 3))), ValueError, "at least 2 items"),
    (lambda: plots.factor_dendrogram(np.ones((4, 3)), metric="nope"), ValueError, "metric='nope'"),
    (lambda: plots.top_features(np.ones((4, 3)), n=0), ValueError, "n must be an integer >= 1"),
    (lambda: plots.history_plot([]), ValueError, "empty"),
    (lambda: plots.history_plot({}), ValueError, "empty"),
])
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- the optional extra
def test_missing_matplotlib_names_the_extra(monkeypatch, clustered):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "sparknmf\[plot\]"'):
        plots.consensus_map(clustered[0])
    with pytest.raises(ImportError, match=r"optional extra 'plot'"):
        plots.require_matplotlib()


def test_the_package_imports_without_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import sparknmf, sparknmf.plots, sparknmf.plots.report\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ---------------------------------------------------------------- real data
@pytest.mark.data
def test_iris_consensus_map(data_dir, tmp_path):
    from sparknmf.datasets import load_iris

    X, species = load_iris(data_dir / "iris")
    fit = multistart(X.T, 2, nrun=4, mode="local", seed=1)
    fig = plots.consensus_map(fit, labels=species, figsize=(5, 4), dpi=DPI, save=tmp_path / "iris.png")
    check_png(tmp_path / "iris.png", (5, 4))
    setosa = np.asarray(species) == "setosa"
    assert contiguous(fig.sparknmf["row_order"], setosa)
