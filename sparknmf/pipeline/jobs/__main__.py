"""``python -m sparknmf.pipeline.jobs [JOB]``: every job's installed command and the file to give spark-submit.

With a job name, prints only that job's file, for ``spark-submit ... "$(python -m sparknmf.pipeline.jobs
factorize)" conf.toml``.
"""

import sys

from sparknmf.pipeline.jobs import JOBS, command, script


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv:
        if len(argv) != 1 or argv[0] not in JOBS:
            print(f"usage: python -m sparknmf.pipeline.jobs [{' | '.join(JOBS)}]", file=sys.stderr)
            return 2
        print(script(argv[0]))
        return 0
    for name in JOBS:
        print(f"{name:<12} {command(name):<22} {script(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
