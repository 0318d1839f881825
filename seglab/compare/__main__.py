"""``python -m seglab.compare``."""

from seglab.compare.main import main

main()
