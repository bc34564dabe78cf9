"""wavecore-sim: cycle-level simulation of CNN training with Mini-batch Serialization.

The pipeline (DESIGN section 2): workload -> training -> schedule -> compiler -> sim /
analytical -> report. :mod:`wavecore_sim.api` is the public entry point.
"""

__version__ = "0.1.0"
