"""The data checks ``seglab check-data`` and ``fit`` run.

* :mod:`seglab.data.checks.sample`: every raw sample loaded and checked (values, sizes,
  channels, NaN) - what ``check-data`` does.
* :mod:`seglab.data.checks.scan`: a fast scan of every file of a split (headers, sizes, modes,
  PNG chunk checksums; no full decode) - what ``fit``/``validate``/``test``/``predict`` run before
  the first step, and ``check-data`` too.

Part of the bottom layer: may import ``seglab.data`` itself, numpy and PIL, nothing above.
"""

from seglab.data.checks.sample import (
    DEFAULT_MIN_SIZE,
    Problem,
    check_dataset,
    check_sample,
    format_report,
    too_small_fix,
    too_small_problem,
)
from seglab.data.checks.scan import DataScanError, scan_dataset

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DataScanError",
    "Problem",
    "check_dataset",
    "check_sample",
    "format_report",
    "scan_dataset",
    "too_small_fix",
    "too_small_problem",
]
