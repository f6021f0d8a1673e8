from fope.cli import main

raise SystemExit(main())
