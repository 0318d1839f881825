"""The ``seglab`` command, on top of everything else.

Holds the LightningCLI subclass and entry point (``main``), the ``run.*`` options
(``run_args``), ``base:`` config chains (``config_base``), config-key checking with closest-name
suggestions (``config_check``, ``config_keys``), ``seglab sweep`` and ``seglab check-data``,
``seglab experiments`` and the top-level help (``experiments``), seglab's errors as one line
(``messages``).
May import every other seglab package; nothing imports it.
"""

from seglab.cli.main import SeglabCLI, main, run_cli

__all__ = ["SeglabCLI", "main", "run_cli"]
