"""``python -m seglab``: the same as the ``seglab`` command."""

from seglab.cli import main

main()
