"""Loaders: Matrix Market files, the data folder, and generated examples.

Real data is read from the folder named by the environment variable
``SPARKNMF_DATA`` (see :func:`data_dir`); nothing is downloaded.  Files are
parsed on the driver and validated; a malformed file raises
:class:`~sparknmf.errors.InvalidInputError` naming the file and the problem.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from sparknmf.engine.validation import as_matrix
from sparknmf.errors import InvalidInputError

__all__ = [
    "data_dir", "read_matrix_market", "load_associated_press", "load_iris", "planted_nmf", "block_diagonal",
    "MOVIELENS_SPLITS", "read_movielens_ratings", "load_movielens_100k", "load_movielens_items", "load_movielens_users",
    "load_movielens_csv", "planted_ratings",
]
__all__ += ["DenseText", "read_dense_text"]



def data_dir(required: bool = True) -> Path | None:
    """The folder named by ``SPARKNMF_DATA``; raises (or returns None) if unset or missing."""
    value = os.environ.get("SPARKNMF_DATA")
    path = Path(value) if value else None
    if path is None or not path.is_dir():
        if required:
            raise FileNotFoundError(
                "set SPARKNMF_DATA to the folder holding the real datasets "
                f"(currently {'unset' if value is None else repr(value)})"
            )
        return None
    return path


def _read_text(path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{path}: not valid UTF-8 "
                                f"(byte {err.start}: {raw[err.start:err.start + 1]!r})") from None


_FIELDS = ("real", "integer", "pattern", "double")
_SYMMETRIES = ("general", "symmetric", "skew-symmetric")


def _stored_count(symmetry: str, size) -> int:
    """Values an ``array`` file of this symmetry stores: all, the lower triangle, or the strict lower one."""
    n, m = size
    return n * m if symmetry == "general" else n * (n + 1) // 2 if symmetry == "symmetric" else n * (n - 1) // 2


def _check_matrix_market_text(path, text: str):
    """Check the banner, size line and entry lines of a Matrix Market text; returns the declared ``(n, m)``.

    The checks scipy's reader makes less clear: which banner, the declared
    entry count against the body (truncated files), the columns per entry line.
    """
    lines = text.splitlines()
    if not lines or not lines[0].lower().startswith("%%matrixmarket"):
        raise InvalidInputError(f"{path}: not a Matrix Market file (no %%MatrixMarket banner)")
    banner = lines[0].lower().split()
    if len(banner) != 5 or banner[1] != "matrix" or banner[2] not in ("coordinate", "array"):
        raise InvalidInputError(f"{path}: unsupported Matrix Market banner {lines[0]!r}")
    layout, field, symmetry = banner[2], banner[3], banner[4]
    if field not in _FIELDS or symmetry not in _SYMMETRIES:
        raise InvalidInputError(f"{path}: only real/integer/pattern matrices that are general, symmetric or "
                                f"skew-symmetric are supported, got {field} {symmetry}")
    body = [i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("%")]
    if not body:
        raise InvalidInputError(f"{path}: no size line")
    expected = 3 if layout == "coordinate" else 2
    try:
        size = [int(t) for t in lines[body[0]].split()]
    except ValueError:
        raise InvalidInputError(f"{path}: malformed size line {lines[body[0]]!r}") from None
    if len(size) != expected or min(size) < 0:
        raise InvalidInputError(f"{path}: malformed size line {lines[body[0]]!r}")
    if symmetry != "general" and size[0] != size[1]:
        raise InvalidInputError(f"{path}: a {symmetry} matrix must be square, declared {size[0]}x{size[1]}")
    entries = body[1:]
    if layout == "array":
        declared = _stored_count(symmetry, size)
        if len(entries) != declared:
            raise InvalidInputError(f"{path}: declares {size[0]}x{size[1]} {symmetry} = {declared} values but "
                                    f"has {len(entries)}")
        return size[0], size[1]
    width = 2 if field == "pattern" else 3
    for i in entries:
        if len(lines[i].split()) != width:
            raise InvalidInputError(f"{path}: line {i + 1} has the wrong number of columns (expected {width})")
    if len(entries) != size[2]:
        raise InvalidInputError(f"{path}: declares {size[2]} entries but has {len(entries)} (truncated?)")
    return size[0], size[1]


def read_matrix_market(path, *, duplicates: str = "error"):
    """Read a Matrix Market ``coordinate`` or ``array`` file as CSR / ndarray, with :func:`scipy.io.mmread`.

    Supports ``real``, ``integer`` and ``pattern`` fields (a pattern entry
    reads as 1) with ``general``, ``symmetric`` or ``skew-symmetric``
    symmetry; scipy expands the stored triangle to the full matrix (a
    skew-symmetric matrix has negative entries unless it is zero, so NMF
    refuses it after reading).  Before parsing, the banner, the size line,
    the declared entry count and the columns of each entry line are checked
    on the text; scipy reports malformed numbers and indices outside the
    size by line; after parsing, the values are checked against NMF's needs
    (finite, non-negative, no duplicate coordinates unless
    ``duplicates="sum"``).  Every problem raises
    :class:`~sparknmf.errors.InvalidInputError` naming the file.

    Parameters
    ----------
    path : str or Path
    duplicates : {"error", "sum"}
        Policy for repeated coordinates.

    Returns
    -------
    csr_matrix of shape (n, m) for coordinate files, ndarray of shape (n, m) for array files.
    """
    text = _read_text(path)
    n, m = _check_matrix_market_text(path, text)
    try:
        V = scipy.io.mmread(io.BytesIO(text.encode("utf-8")))
    except ValueError as err:
        detail = str(err).rstrip(".").lower()  # scipy's "Line 5: Invalid integer value."
        where = f": an index is outside the declared size {n}x{m}" if "out of bounds" in detail else ""
        raise InvalidInputError(f"{path}: {detail}{where}") from None
    return as_matrix(V, str(path), duplicates=duplicates)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


@dataclass
class DenseText:
    """A dense matrix read from a delimited text file (:func:`read_dense_text`).

    Attributes
    ----------
    matrix : ndarray of shape (n, m)
        One row per line of the file.
    row_names : list of str or None
        The first field of each line, with ``row_names=True``.
    col_names : list of str or None
        The header's names of the matrix's columns, with ``header=True``.
    labels : list of str or None
        The values of ``label_column``, one per line.
    """

    matrix: np.ndarray
    row_names: list | None = None
    col_names: list | None = None
    labels: list | None = None


def read_dense_text(path, *, delimiter: str = "\t", header: bool = False, row_names: bool = False,
                    label_column=None) -> DenseText:
    """Read a dense matrix from delimited text (TSV by default; ``delimiter=","`` for CSV).

    Parameters
    ----------
    path : path
    delimiter : str
        Field separator.
    header : bool
        The first line names the columns.
    row_names : bool
        The first field of every line is the row's name (not a value).
    label_column : str or int, optional
        A column of class labels to take out of the matrix: its header name,
        or its 1-based position among the fields.

    Returns
    -------
    DenseText
        ``matrix`` (n lines × m values) validated like any NMF input
        (finite, non-negative), plus names and labels.  Every line must have
        the same number of fields; a bad field raises
        :class:`~sparknmf.errors.InvalidInputError` naming the line and field.
    """
    if not delimiter:
        raise ValueError("delimiter must be a non-empty string")
    lines = [line for line in _read_text(path).splitlines() if line.strip()]
    names = lines.pop(0).split(delimiter) if header and lines else None
    rows = [line.split(delimiter) for line in lines]
    if not rows:
        raise InvalidInputError(f"{path}: no data lines")
    width = len(names) if names is not None else len(rows[0])
    for number, row in enumerate(rows, 2 if header else 1):
        if len(row) != width:
            raise InvalidInputError(f"{path}: line {number} has {len(row)} fields, expected {width}")
    skip = [0] if row_names else []
    labels = None
    if label_column is not None:
        if isinstance(label_column, str) and not label_column.isdigit():
            if names is None or label_column not in names:
                raise InvalidInputError(f"{path}: no column named {label_column!r} (header: {names})")
            position = names.index(label_column)
        else:
            position = int(label_column) - 1
            if not 0 <= position < width:
                raise InvalidInputError(f"{path}: label column {label_column} is outside the {width} fields")
        skip.append(position)
        labels = [row[position].strip() for row in rows]
    keep = [j for j in range(width) if j not in skip]
    try:
        values = np.array([[row[j] for j in keep] for row in rows], dtype=np.float64)
    except ValueError:
        i, j = next((i, j) for i, row in enumerate(rows) for j in keep if not _is_number(row[j]))
        raise InvalidInputError(f"{path}: line {i + (2 if header else 1)}, field {j + 1}: "
                                f"non-numeric value {rows[i][j]!r}") from None
    return DenseText(
        matrix=as_matrix(values, str(path)),
        row_names=[row[0].strip() for row in rows] if row_names else None,
        col_names=[names[j].strip() for j in keep] if names is not None else None,
        labels=labels,
    )


def load_associated_press(folder=None):
    """AssociatedPress document-term counts: (csr 2246×10473, list of 10473 terms).

    Documents are rows, terms columns.  Reads ``associated_press/`` under
    ``folder`` (default :func:`data_dir`).
    """
    base = Path(folder) if folder else data_dir() / "associated_press"
    V = read_matrix_market(base / "associated_press.mtx")
    terms = _read_text(base / "associated_press_terms.txt").split()
    if len(terms) != V.shape[1]:
        raise InvalidInputError(f"{base}: {len(terms)} terms for {V.shape[1]} columns")
    return V, terms


def load_iris(folder=None):
    """Fisher's iris: (ndarray 150×4 of measurements, list of 150 species names)."""
    base = Path(folder) if folder else data_dir() / "iris"
    lines = _read_text(base / "iris.csv").strip().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    if any(len(r) != 5 for r in rows):
        raise InvalidInputError(f"{base / 'iris.csv'}: expected 5 columns per row")
    return np.array([[float(x) for x in r[:4]] for r in rows]), [r[4] for r in rows]


def planted_nmf(n: int, m: int, k: int, *, density: float = 1.0, noise: float = 0.0, seed: int = 0):
    """A matrix with an exact non-negative rank-k factorisation (plus optional noise).

    Returns ``(V, W, H)`` with V (n×m; CSR when ``density < 1``), W (n×k),
    H (k×m).  Sparse V keeps a random ``density`` fraction of the entries of
    W·H (sparse W and H give a sparse exact product instead when noise is 0).
    """
    rng = np.random.default_rng(seed)
    W = rng.random((n, k))
    H = rng.random((k, m))
    if density < 1.0:
        W *= rng.random((n, k)) < np.sqrt(density / k) * 2
        H *= rng.random((k, m)) < np.sqrt(density / k) * 2
    V = W @ H
    if noise:
        V = V + noise * rng.random((n, m)) * (V > 0)
    return (sp.csr_matrix(V) if density < 1.0 else V), W, H


def block_diagonal(sizes=(10, 10, 10), features: int = 30, *, signal: float = 1.0, background: float = 0.05,
                   seed: int = 0):
    """A planted clustered matrix: features × samples, one block per cluster.

    Samples (columns) of cluster c have high values on the features of block
    c.  Returns ``(V, labels)`` with V (features × sum(sizes)) and the true
    cluster of each sample (like R NMF's ``syntheticNMF``).
    """
    rng = np.random.default_rng(seed)
    k = len(sizes)
    labels = np.repeat(np.arange(k), sizes)
    feature_blocks = np.array_split(np.arange(features), k)
    V = background * rng.random((features, labels.size))
    for c, rows in enumerate(feature_blocks):
        V[np.ix_(rows, np.flatnonzero(labels == c))] += signal * (0.5 + rng.random((rows.size, sizes[c])))
    return V, labels


# ------------------------------------------------------------------------------------------ MovieLens
MOVIELENS_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


def _split_lines(path, text, sep, width):
    """Rows of a separated text file, each checked to have ``width`` fields."""
    rows = [line.split(sep) for line in text.splitlines() if line.strip()]
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise InvalidInputError(f"{path}: line {number} has {len(row)} fields, expected {width}")
    return rows


def _ratings_table(path, rows, user, item, rating, stamp):
    import pyarrow as pa

    try:
        columns = {
            "user": pa.array([int(r[user]) for r in rows], pa.int64()),
            "item": pa.array([int(r[item]) for r in rows], pa.int64()),
            "rating": pa.array([float(r[rating]) for r in rows], pa.float64()),
            "timestamp": pa.array([int(r[stamp]) for r in rows], pa.int64()),
        }
    except ValueError as err:
        raise InvalidInputError(f"{path}: non-numeric field ({err})") from None
    return pa.table(columns)


def read_movielens_ratings(path):
    """A MovieLens 100K ratings file (``u.data``, ``u1.base``, ...): tab-separated, no header.

    Returns
    -------
    pyarrow.Table with columns ``user long, item long, rating double, timestamp long`` (seconds).
    """
    path = Path(path)
    return _ratings_table(path, _split_lines(path, _read_text(path), "\t", 4), 0, 1, 2, 3)


def _ml_folder(folder):
    return Path(folder) if folder else data_dir() / "ml-100k"


def load_movielens_100k(split=None, folder=None):
    """MovieLens 100K ratings: all of ``u.data``, or a ``(train, test)`` split.

    Parameters
    ----------
    split : {None, "u1", ..., "u5", "ua", "ub"}
        None: ``u.data`` (100,000 ratings).  Otherwise ``(u?.base, u?.test)``.
    folder : path, optional
        The ``ml-100k`` folder (default ``data_dir() / "ml-100k"``).

    Returns
    -------
    pyarrow.Table, or a pair of them (columns of :func:`read_movielens_ratings`);
    turn one into a DataFrame with ``spark.createDataFrame(table)``.
    """
    base = _ml_folder(folder)
    if split is None:
        return read_movielens_ratings(base / "u.data")
    if split not in MOVIELENS_SPLITS:
        raise ValueError(f"split must be None or one of {list(MOVIELENS_SPLITS)}, got {split!r}")
    return read_movielens_ratings(base / f"{split}.base"), read_movielens_ratings(base / f"{split}.test")


def load_movielens_items(folder=None):
    """``u.item`` (``|``-separated, latin-1): ``item long, title, release_date, video_release_date, url,
    genres list<string>`` with the genre names of ``u.genre`` order."""
    import pyarrow as pa

    path = _ml_folder(folder) / "u.item"
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    rows = _split_lines(path, path.read_bytes().decode("latin-1"), "|", 5 + len(_ML_GENRES))
    try:
        items = [int(r[0]) for r in rows]
        flags = np.array([[int(f) for f in r[5:]] for r in rows], dtype=bool)
    except ValueError as err:
        raise InvalidInputError(f"{path}: non-numeric id or genre flag ({err})") from None
    return pa.table({
        "item": pa.array(items, pa.int64()), "title": [r[1] for r in rows], "release_date": [r[2] for r in rows],
        "video_release_date": [r[3] for r in rows], "url": [r[4] for r in rows],
        "genres": [[g for g, on in zip(_ML_GENRES, row) if on] for row in flags],
    })


def load_movielens_users(folder=None):
    """``u.user`` (``|``-separated): ``user long, age long, gender, occupation, zip_code``."""
    import pyarrow as pa

    path = _ml_folder(folder) / "u.user"
    rows = _split_lines(path, _read_text(path), "|", 5)
    try:
        users, ages = [int(r[0]) for r in rows], [int(r[1]) for r in rows]
    except ValueError as err:
        raise InvalidInputError(f"{path}: non-numeric user id or age ({err})") from None
    return pa.table({"user": pa.array(users, pa.int64()), "age": pa.array(ages, pa.int64()),
                     "gender": [r[2] for r in rows], "occupation": [r[3] for r in rows],
                     "zip_code": [r[4] for r in rows]})


def load_movielens_csv(folder):
    """MovieLens CSV releases (``ratings.csv``, ``movies.csv`` with headers), e.g. ml-latest-small.

    Returns
    -------
    (ratings, movies) : pyarrow Tables; ratings has the columns of
    :func:`read_movielens_ratings`, movies ``item long, title, genres list<string>``.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    base = Path(folder)
    for name in ("ratings.csv", "movies.csv"):
        if not (base / name).is_file():
            raise FileNotFoundError(f"no such file: {base / name}")
    try:
        ratings = pacsv.read_csv(base / "ratings.csv")
        movies = pacsv.read_csv(base / "movies.csv", convert_options=pacsv.ConvertOptions(
            column_types={"movieId": pa.int64(), "title": pa.string(), "genres": pa.string()}))
    except pa.ArrowInvalid as err:
        raise InvalidInputError(f"{base}: malformed CSV ({err})") from None
    expected = {"ratings.csv": ["userId", "movieId", "rating", "timestamp"],
                "movies.csv": ["movieId", "title", "genres"]}
    for name, table in (("ratings.csv", ratings), ("movies.csv", movies)):
        if table.column_names[: len(expected[name])] != expected[name]:
            raise InvalidInputError(f"{base / name}: expected columns {expected[name]}, got {table.column_names}")
    ratings = pa.table({"user": ratings["userId"].cast(pa.int64()), "item": ratings["movieId"].cast(pa.int64()),
                        "rating": ratings["rating"].cast(pa.float64()),
                        "timestamp": ratings["timestamp"].cast(pa.int64())})
    genres = [[] if g in (None, "(no genres listed)") else g.split("|") for g in movies["genres"].to_pylist()]
    movies = pa.table({"item": movies["movieId"], "title": movies["title"], "genres": genres})
    return ratings, movies


def planted_ratings(n_users, n_items, rank, *, density=0.3, noise=0.0, biases=True, seed=0):
    """Synthetic ratings from a planted biased low-rank model, for tests and benchmarks.

    ``r_ui = μ + b_u + b_i + w_uᵀh_i + noise·N(0, 1)`` on a random ``density``
    fraction of the pairs (every user and item keeps at least one rating).

    Returns
    -------
    (table, truth) : a pyarrow Table ``user long, item long, rating double`` and a
    dict with ``mu``, ``user_bias`` (n), ``item_bias`` (m), ``W`` (n×rank), ``H`` (m×rank).
    """
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    W, H = rng.normal(0, 1, (n_users, rank)), rng.normal(0, 1, (n_items, rank))
    bu = rng.normal(0, 1, n_users) if biases else np.zeros(n_users)
    bi = rng.normal(0, 1, n_items) if biases else np.zeros(n_items)
    mu = 3.0 if biases else 0.0
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    r = mu + bu[u] + bi[i] + np.einsum("nk,nk->n", W[u], H[i]) + noise * rng.standard_normal(u.size)
    table = pa.table({"user": pa.array(u, pa.int64()), "item": pa.array(i, pa.int64()), "rating": r})
    return table, {"mu": mu, "user_bias": bu, "item_bias": bi, "W": W, "H": H}
