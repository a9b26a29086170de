"""Runs past one machine: the routing rule, and the run queue and sweeps over a Ray cluster.

``gouache.cluster.routing`` is pure; ``gouache.cluster.ray_workers`` is the only module that imports
``ray`` (the optional extra ``gouache[ray]``), and only ``gouache serve --ray`` and
``gouache run --ray`` import it. ``docs/scaling.md`` says how to run it.
"""
