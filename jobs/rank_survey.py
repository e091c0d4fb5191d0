"""spark-submit entry point: rank survey of a Matrix Market file; writes the table as CSV and JSON.

    spark-submit jobs/rank_survey.py --input V.mtx --ks 2-6 --nrun 30 --output out/survey \
        [--labels labels.txt] [--algorithm bpp] [--seed 0] [--rows-are-samples] [--no-randomized] \
        [--report out/report]

V is read on the driver (:func:`sparknmf.datasets.read_matrix_market`);
samples are its columns unless ``--rows-are-samples``.  ``--labels`` names a
text file with one class per sample.  Outputs ``<output>.csv`` and
``<output>.json`` (see :class:`sparknmf.survey.Survey`); ``--report DIR``
also writes a static HTML report there (:func:`sparknmf.report.write_report`:
the survey plot and table, the parameters and the timings; needs the
``plot`` extra).
"""

import argparse
import time
from pathlib import Path

from sparknmf.datasets import read_matrix_market
from sparknmf.session import get_session
from sparknmf.survey import rank_survey


def _ks(text):
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description="NMF rank survey (cophenetic, dispersion, silhouettes, ...)")
    parser.add_argument("--input", required=True, help="Matrix Market file of V (n×m)")
    parser.add_argument("--ks", type=_ks, required=True, help="ranks, e.g. 2-6")
    parser.add_argument("--nrun", type=int, default=30)
    parser.add_argument("--output", required=True, help="path prefix of the .csv and .json tables")
    parser.add_argument("--labels", help="file with one known class per sample")
    parser.add_argument("--algorithm", default="bpp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows-are-samples", action="store_true")
    parser.add_argument("--no-randomized", action="store_true")
    parser.add_argument("--report", help="folder for a static HTML report (survey plot, table, parameters, timings)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    V = read_matrix_market(args.input)
    read = time.perf_counter()
    labels = Path(args.labels).read_text().split() if args.labels else None
    survey = rank_survey(V, args.ks, args.nrun, labels=labels, randomized=not args.no_randomized, seed=args.seed,
                         samples="rows" if args.rows_are_samples else "columns", algorithm=args.algorithm,
                         spark=get_session())
    surveyed = time.perf_counter()
    survey.write_csv(f"{args.output}.csv")
    survey.write_json(f"{args.output}.json")
    if args.report:
        from sparknmf.report import write_report

        parameters = {key: value for key, value in vars(args).items() if key != "report"}
        parameters.update(shape=f"{V.shape[0]}×{V.shape[1]}", ks=f"{args.ks[0]}-{args.ks[-1]}")
        write_report(args.report, survey=survey, parameters=parameters, title=f"Rank survey of {args.input}",
                     timings={"read input": read - start, "rank survey": surveyed - read})


if __name__ == "__main__":
    main()
