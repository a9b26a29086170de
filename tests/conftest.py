"""Settings for the whole suite, made before any test module imports torch.

OpenMP threads that spin while they wait made torch runs 20-60x slower whenever other processes held
the cores (FACTS.md, issue 18); passive waiting keeps a busy machine from failing the suite on time.
The thread count itself follows gouache's own policy (``gouache.nodes.devices.thread_plan``), never a
number written into a test.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
