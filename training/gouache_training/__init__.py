"""Training, evaluation and export of gouache's embedded model `gouache-tiny`; not part of the gouache package.

It lives in the repository's `training/` folder and runs from a checkout:
`PYTHONPATH=training python -m gouache_training.train --seed 0` from the repository root, after
`pip install -e ".[train]"`. The tests find it through pytest's `pythonpath` setting.
"""

from pathlib import Path

# The shipped artefacts in the checkout this package sits in: where `train` writes and `evaluate` reads.
WEIGHTS = Path(__file__).resolve().parents[2] / "nodes" / "embedded" / "weights"
