from nixdrift.cli import main

raise SystemExit(main())
