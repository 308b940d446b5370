"""spark-submit entry point: `spark-submit jobs/download.py --conf conf/<env>.yaml ...` = `panda-spark download ...`."""
import os
import sys

# Python puts this folder first on sys.path, where jobs/select.py would shadow the standard
# library's `select` (used by subprocess and sockets) in every job: take the folder off first.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from panda_spark.cli import main as cli_main  # noqa: E402


def main(argv=None):
    return cli_main(["download", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
