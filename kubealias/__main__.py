from kubealias._cli import main

raise SystemExit(main())
