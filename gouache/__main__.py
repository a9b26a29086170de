"""Allow ``python -m gouache``."""

from gouache.cli.main import main

raise SystemExit(main())
