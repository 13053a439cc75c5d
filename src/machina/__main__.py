from machina.cli import main

raise SystemExit(main())
