"""seglab's benchmarks: one module per benchmark, the shared timing helper in ``timing``.

``make bench`` (``run``), ``make bench-quality`` (``quality``) and ``make bench-gpu`` (``gpu``)
each rewrite their own section of ``benchmarks/RESULTS.md``.
"""
