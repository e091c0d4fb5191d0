"""Bad input on the local paths: every kind raises a clear error naming the problem."""

import inspect

import numpy as np
import pytest
import scipy.sparse as sp

from sparknmf import NMF, InvalidInputError, nmf
from sparknmf.datasets import read_matrix_market


@pytest.mark.parametrize(
    "V, message",
    [
        (np.array([[1.0, -0.5], [2.0, 3.0]]), r"1 negative entries, e.g. -0.5 at \(0, 1\)"),
        (np.array([[1.0, np.nan], [np.nan, 3.0]]), r"2 NaN or infinite entries, e.g. nan at \(0, 1\)"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "NaN or infinite"),
        (np.zeros((0, 3)), r"is empty \(shape \(0, 3\)\)"),
        (np.ones(4), "must be 2-D"),
        (np.array([["a", "b"], ["c", "d"]]), "must hold real numbers"),
        (np.array([[1 + 1j, 2], [3, 4]]), "must hold real numbers"),
        (sp.coo_matrix(([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2)), r"1 duplicate coordinates, e.g. \(0, 1\)"),
        (sp.csr_matrix(np.array([[1.0, -2.0]])), "negative entries"),
    ],
)
def test_bad_matrices(V, message):
    with pytest.raises(InvalidInputError, match=message):
        nmf(V, 1)
    with pytest.raises(InvalidInputError, match=message):
        NMF(k=1).fit(V)


def test_duplicates_can_be_summed():
    V = sp.coo_matrix(([1.0, 2.0, 1.0], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    fit = nmf(V, 2, duplicates="sum", max_iter=300, tol=1e-12, init="nndsvd")
    np.testing.assert_allclose(fit.W @ fit.H, [[0, 3], [1, 0]], atol=1e-6)


@pytest.mark.parametrize("k", [0, -1, 4, 2.5, True, "2"])
def test_rank_out_of_range(k):
    with pytest.raises(ValueError, match="k"):
        nmf(np.ones((3, 5)), k)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"k": 0}, r"invalid k=0; it must be an integer >= 1"),
        ({"algorithm": "als"}, r"invalid algorithm='als'; it must be one of \['auto', 'bpp', 'brunet'"),
        ({"init": "kmeans"}, "invalid init='kmeans'"),
        ({"maxIter": -1}, "invalid maxIter=-1"),
        ({"tol": -1e-3}, "invalid tol"),
        ({"beta": -1.0}, "invalid beta"),
        ({"dtype": "float16"}, r"invalid dtype='float16'; it must be one of \['float64', 'float32'\]"),
        ({"duplicates": "mean"}, "invalid duplicates"),
        ({"backend": "gpu"}, "invalid backend"),
        ({"numRowBlocks": -2}, "invalid numRowBlocks"),
        ({"timeLimit": -5.0}, "invalid timeLimit"),
        ({"checkpointInterval": 0}, "invalid checkpointInterval"),
    ],
)
def test_bad_params_named_before_any_work(params, message):
    est = NMF(k=1)
    est.setParams(**{**{"k": 1}, **params})
    with pytest.raises(ValueError, match=message):
        est.fit(np.ones((3, 3)))


def test_local_backend_rejects_dataframes_and_k_beyond_shape():
    with pytest.raises(ValueError, match=r"k=3 is out of range.*min\(n, m\) = 2"):
        NMF(k=3).fit(np.ones((2, 5)))


def test_signature_defaults_equal_set_defaults():
    """Defaults live in _setDefault; the keyword signatures must agree with it."""
    est = NMF()
    for method in (NMF.__init__, NMF.setParams):
        for name, parameter in inspect.signature(method).parameters.items():
            if name in ("self",):
                continue
            assert est.getOrDefault(name) == parameter.default, name
    assert set(inspect.signature(NMF.__init__).parameters) - {"self"} == {p.name for p in est.params}


def test_generated_accessors():
    est = NMF().setK(7).setAlgorithm("hals").setRowCol("term")
    assert (est.getK(), est.getAlgorithm(), est.getRowCol()) == (7, "hals", "term")
    copy = est.copy({est.k: 3})
    assert copy.getK() == 3 and est.getK() == 7


MM = "%%MatrixMarket matrix coordinate real general\n% comment\n3 4 3\n1 1 1.5\n2 3 2\n3 4 1\n"


def _write(tmp_path, text, name="m.mtx", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_matrix_market_reads_coordinate_array_and_pattern(tmp_path):
    V = read_matrix_market(_write(tmp_path, MM))
    assert V.shape == (3, 4) and V.nnz == 3 and V[1, 2] == 2.0
    arr = read_matrix_market(_write(tmp_path, "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n"))
    np.testing.assert_array_equal(arr, [[1, 3], [2, 4]])
    pat = read_matrix_market(_write(tmp_path, "%%MatrixMarket matrix coordinate pattern general\n2 2 1\n2 1\n"))
    assert pat[1, 0] == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [  # the stored triangle expanded by hand; the diagonal is stored once
        ("%%MatrixMarket matrix coordinate real symmetric\n3 3 3\n1 1 2\n3 1 1.5\n3 2 4\n",
         [[2, 0, 1.5], [0, 0, 4], [1.5, 4, 0]]),
        ("%%MatrixMarket matrix coordinate pattern symmetric\n3 3 2\n2 1\n3 3\n", [[0, 1, 0], [1, 0, 0], [0, 0, 1]]),
        ("%%MatrixMarket matrix coordinate integer skew-symmetric\n2 2 0\n", [[0, 0], [0, 0]]),
        ("%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n3\n", [[1, 2], [2, 3]]),
    ],
)
def test_matrix_market_symmetric_files_are_expanded(tmp_path, text, expected):
    """Symmetric, pattern and skew-symmetric files (issue 22, item 7) read as the full matrix."""
    V = read_matrix_market(_write(tmp_path, text))
    dense = V.toarray() if sp.issparse(V) else V
    np.testing.assert_array_equal(dense, expected)
    import scipy.io

    oracle = scipy.io.mmread(str(tmp_path / "m.mtx"))
    np.testing.assert_array_equal(dense, oracle.toarray() if sp.issparse(oracle) else oracle)


@pytest.mark.parametrize(
    "text, message",
    [
        (MM.replace("3 4 3\n", "3 4 5\n"), "declares 5 entries but has 3"),
        (MM + "3 3\n", "line 7 has the wrong number of columns"),
        ("%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n", "only real/integer/pattern"),
        ("%%MatrixMarket matrix coordinate complex hermitian\n1 1 1\n1 1 1 0\n", "got complex hermitian"),
        ("%%MatrixMarket matrix coordinate real symmetric\n2 3 1\n2 1 1\n", "symmetric matrix must be square"),
        ("%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n2 1 3\n", "1 negative entries"),
        ("%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n", "2x2 symmetric = 3 values but has 2"),
        ("not a matrix market file\n", "no %%MatrixMarket banner"),
        (MM.replace("3 4 3", "3 four 3"), "malformed size line"),
        (MM.replace("3 4 1\n", "5 4 1\n"),
         "line 6: row index out of bounds: an index is outside the declared size 3x4"),
        (MM.replace("2 3 2", "2 3 two"), "line 5: invalid floating-point value"),
        (MM.replace("2 3 2", "2.5 3 2"), "line 5: invalid integer value"),
        (MM.replace("2 3 2", "2 3 -2"), "negative entries"),
        (MM.replace("3 4 1", "1 1 1"), "duplicate coordinates"),
        ("%%MatrixMarket matrix coordinate real general\n", "no size line"),
    ],
)
def test_malformed_matrix_market(tmp_path, text, message):
    with pytest.raises(InvalidInputError, match=message):
        read_matrix_market(_write(tmp_path, text))


def test_matrix_market_latin1_and_missing_file(tmp_path):
    path = _write(tmp_path, MM.replace("% comment", "% Misérables"), encoding="latin-1")
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        read_matrix_market(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_matrix_market(tmp_path / "absent.mtx")
