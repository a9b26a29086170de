"""Allow ``python -m gouache``."""

from gouache.engine.cli import main

raise SystemExit(main())
