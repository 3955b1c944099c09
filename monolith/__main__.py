from monolith.cli import main

raise SystemExit(main())
