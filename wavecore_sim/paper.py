"""The paper's published numbers that the reproduction is compared with.

Lym, Behroozi, Wen, Li, Kwon, Erez, "Mini-batch Serialization: CNN Training with Inter-layer
Data Reuse", MLSys 2019 (arXiv 1810.00307). Its own module so that the experiments (which
compare against them) and the figures (which draw them) both read them without importing
each other.
"""

from __future__ import annotations

#: The paper's headline for MBS + WaveCore against conventional training (abstract), as
#: ratios to the baseline: DRAM traffic x0.25 (-75 %), speedup x1.53 (+53 %), system
#: energy x0.74 (-26 %).
PAPER_HEADLINE = {"traffic": 0.25, "speedup": 1.53, "energy": 0.74}
#: The schedule the headline is compared with: the paper's full MBS (mbs1 + branch reuse).
PAPER_SCHEDULE = "mbs2"
#: Conventional layer-by-layer training, which the headline is relative to.
REFERENCE_SCHEDULE = "baseline"
