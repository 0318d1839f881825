"""What the ``seglab`` command prints around a run: seglab's own errors as one clear message.

seglab raises errors that name the file or option and the fix; printed with a traceback and,
for errors raised while LightningCLI builds the task, wrapped in a jsonargparse union message
with a dump of the whole config, they were hard to find. :func:`friendly_error` recovers the
message; ``seglab ... --debug`` keeps the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import seglab

PACKAGE = Path(seglab.__file__).resolve().parent
UNION = "Does not validate against any of the Union subtypes"
OWN_TYPES = (ValueError, OSError, FloatingPointError)


def _raised_in_seglab(err: BaseException) -> bool:
    tb, last = err.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    return Path(last.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE)


def _union_messages(text: str) -> list[str]:
    """The class errors inside a jsonargparse union error (without the ``None`` alternative)."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        if line.startswith("Errors:"):
            inside = True
        elif inside and line.startswith("  - "):
            msg = line[4:].strip()
            if not msg.startswith("Expected a <class 'NoneType'>"):
                out.append(msg)
        elif inside and not line.startswith("    "):
            inside = False
    return out


def friendly_error(err: BaseException) -> str | None:
    """The one-line message of a seglab error, or None for anything else (a bug: traceback)."""
    if type(err).__module__.startswith("seglab"):
        return str(err)
    text = str(err)
    if isinstance(err, ValueError) and UNION in text:
        found = _union_messages(text)
        return "\n".join(found) if found else None
    if isinstance(err, OWN_TYPES) and _raised_in_seglab(err):
        return text
    return None


def print_rank_zero(text: str, stream: TextIO | None = None) -> None:
    """Prints one flushed line on the global rank zero only."""
    from lightning.pytorch.utilities import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) == 0:
        print(text, file=stream or sys.stdout, flush=True)
