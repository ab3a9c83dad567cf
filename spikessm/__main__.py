from spikessm.cli import main

raise SystemExit(main())
