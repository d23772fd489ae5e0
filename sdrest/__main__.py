"""`python -m sdrest` is the `sdrest` command."""

from sdrest.cli import main

raise SystemExit(main())
