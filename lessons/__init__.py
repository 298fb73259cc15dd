"""The lessons of minitl: jupytext "percent" scripts named lesson_NN_<slug>.py.

Run one with ``minitl lesson N`` (``--step`` to go cell by cell, ``--fast`` for small data),
open it as a notebook with ``minitl lesson N --notebook``, or run them all with ``minitl tour``.
A new lesson joins the list and the tour simply by being a file here; it records what the tour
reports through ``minitl.report`` (table, figure, note, metric).
"""
