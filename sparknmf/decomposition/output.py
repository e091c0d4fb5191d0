"""The type of NMFModel.transform's output column: ``outputType`` "array" (array<double>) or "vector".

``"vector"`` gives pyspark.ml.linalg dense vectors (``VectorUDT``), the type
pyspark.ml stages (KMeans, LogisticRegression, StandardScaler, ...) read as
features, so an NMF chains into a ``Pipeline``.
"""

from __future__ import annotations

__all__ = ["OUTPUT_TYPES", "as_output_type"]

OUTPUT_TYPES = ("array", "vector")


def as_output_type(frame, column: str, output_type: str):
    """``frame`` with its array<double> ``column`` as ``output_type`` (one of :data:`OUTPUT_TYPES`).

    Parameters
    ----------
    frame : DataFrame
        Holds ``column``, an array<double> of k values per row.
    column : str
    output_type : str
        ``"array"`` returns ``frame`` as it is; ``"vector"`` converts the column to dense ``VectorUDT``
        vectors of size k (lazily, no Spark job), keeping the column's position.
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"outputType must be one of {list(OUTPUT_TYPES)}, got {output_type!r}")
    if output_type == "array":
        return frame
    from pyspark.ml.functions import array_to_vector

    return frame.withColumn(column, array_to_vector(frame[column]))
