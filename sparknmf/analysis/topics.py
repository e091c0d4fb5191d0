"""Topics from a term-document matrix: selecting documents and terms, naming terms, top terms, document weights.

V is terms × documents (n×m): documents are the samples, so they are the
columns of V, W (n×k) holds each topic's term weights and H (k×m) each
document's topic weights.  Everything here runs on the driver on numpy /
scipy input.

    V, terms, docs = select_terms(V, first_documents=20, min_document_fraction=0.1)
    fit = sparknmf.nmf(V, 4, algorithm="snmf/r")
    table = top_terms(fit.W, names, 40)     # rows: factor, rank, term, weight
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sparknmf.errors import InvalidInputError

__all__ = ["select_terms", "read_vocabulary", "term_names", "top_terms", "document_topics", "prominent_terms"]


def select_terms(V, *, first_documents: int = 0, min_document_fraction: float = 0.0,
                 max_document_fraction: float = 1.0):
    """Keep the first documents, then the terms present in a given fraction of them.

    Parameters
    ----------
    V : ndarray or scipy sparse matrix of shape (n terms, m documents)
    first_documents : int
        Keep only the first this many documents (columns); 0 keeps all.
    min_document_fraction, max_document_fraction : float in [0, 1]
        Keep the terms whose document frequency (share of the kept documents
        with a non-zero count) lies in ``[min, max]``.

    Returns
    -------
    (V_selected, term_index, document_index)
        The sub-matrix (CSR or ndarray) and the indices of its rows and
        columns in V.  Raises InvalidInputError when nothing is left.
    """
    for name, value in (("min_document_fraction", min_document_fraction),
                        ("max_document_fraction", max_document_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if min_document_fraction > max_document_fraction:
        raise ValueError(f"min_document_fraction={min_document_fraction} > max_document_fraction="
                         f"{max_document_fraction}")
    if isinstance(first_documents, bool) or not isinstance(first_documents, (int, np.integer)) or first_documents < 0:
        raise ValueError(f"first_documents must be an integer >= 0, got {first_documents!r}")
    m = V.shape[1]
    docs = np.arange(min(first_documents, m) if first_documents else m)
    sub = sp.csc_matrix(V)[:, docs] if sp.issparse(V) else np.asarray(V)[:, docs]
    present = np.asarray((sub != 0).sum(axis=1)).ravel() / docs.size
    terms = np.flatnonzero((present >= min_document_fraction) & (present <= max_document_fraction))
    if terms.size == 0:
        raise InvalidInputError(f"no term is in between {min_document_fraction:g} and {max_document_fraction:g} of "
                                f"the {docs.size} documents")
    sub = sub[terms]
    return (sp.csr_matrix(sub) if sp.issparse(sub) else sub), terms, docs


def read_vocabulary(path, *, delimiter: str = "", id_field: int = 0, name_field: int = 1,
                    encoding: str = "utf-8") -> dict:
    """Term names by id from a text file.

    Parameters
    ----------
    path : path
    delimiter : str
        ``""``: one name per line, its id the line number (1, 2, ...; Matrix
        Market indices).  Otherwise fields separated by ``delimiter`` (e.g.
        MovieLens ``u.item`` with ``"|"``).
    id_field, name_field : int
        1-based fields holding the id and the name (``id_field=0``: the line number).
    encoding : str
        E.g. ``"latin-1"`` for MovieLens ``u.item``.

    Returns
    -------
    dict str id -> name
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such vocabulary file: {path}")
    try:
        lines = [line for line in path.read_bytes().decode(encoding).splitlines() if line.strip()]
    except (UnicodeDecodeError, LookupError) as err:
        raise InvalidInputError(f"{path}: cannot be read as {encoding}: {err}") from None
    if not delimiter:
        return {str(i): line.strip() for i, line in enumerate(lines, 1)}
    names = {}
    for number, line in enumerate(lines, 1):
        fields = line.split(delimiter)
        if max(id_field, name_field) > len(fields):
            raise InvalidInputError(f"{path}: line {number} has {len(fields)} fields, fewer than "
                                    f"{max(id_field, name_field)}")
        names[fields[id_field - 1].strip() if id_field else str(number)] = fields[name_field - 1].strip()
    return names


def term_names(vocabulary: dict, ids) -> list:
    """Names of the terms with these ids (str of each id); InvalidInputError listing ids not in the vocabulary."""
    keys = [str(i) for i in ids]
    missing = [k for k in keys if k not in vocabulary]
    if missing:
        raise InvalidInputError(f"{len(missing)} term ids are not in the vocabulary, e.g. {missing[:5]}")
    return [vocabulary[k] for k in keys]


def top_terms(W, names, n: int) -> pa.Table:
    """The ``n`` heaviest terms of each topic.

    Parameters
    ----------
    W : ndarray of shape (terms, k)
    names : sequence of str of shape (terms,)
    n : int

    Returns
    -------
    pyarrow.Table ``factor int (1-based), rank int (1-based), term string, weight double``,
    ordered by factor then rank (ties by term index).  Terms of weight 0 are left out, so a
    topic that the fit left empty has no rows.
    """
    W = np.asarray(W)
    if len(names) != W.shape[0]:
        raise ValueError(f"names has {len(names)} entries for {W.shape[0]} terms")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    n = min(n, W.shape[0])
    order = np.argsort(-W, axis=0, kind="stable")[:n]  # n × k
    k = W.shape[1]
    factor = np.repeat(np.arange(1, k + 1), n)
    rank = np.tile(np.arange(1, n + 1), k)
    index = order.T.ravel()
    weight = W[index, factor - 1].astype(np.float64)
    keep = weight > 0
    return pa.table({
        "factor": pa.array(factor[keep], pa.int32()), "rank": pa.array(rank[keep], pa.int32()),
        "term": [names[i] for i in index[keep]], "weight": weight[keep],
    })


def document_topics(H, ids) -> pa.Table:
    """Each document's topic weights, dominant topic (1-based) and that topic's share of its weights.

    Parameters
    ----------
    H : ndarray of shape (k, documents)
    ids : sequence of shape (documents,)

    Returns
    -------
    pyarrow.Table ``document, weights array<double>, topic int, share double``
    (share NaN for a document with no weight).
    """
    H = np.asarray(H, dtype=np.float64)
    totals = H.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = H.max(axis=0) / totals
    return pa.table({
        "document": pa.array(list(ids)), "weights": pa.array(list(H.T), pa.list_(pa.float64())),
        "topic": pa.array(np.argmax(H, axis=0) + 1, pa.int32()), "share": share,
    })


def prominent_terms(W, factors, count: int) -> np.ndarray:
    """The ``count`` terms with the largest weight on any of ``factors`` (0-based), heaviest first.

    Used to pick the terms worth labelling on a factor scatter or clustering in a dendrogram.
    """
    W = np.asarray(W)
    weight = W[:, list(factors)].max(axis=1)
    return np.argsort(-weight, kind="stable")[: min(int(count), W.shape[0])]
