import sys

from namedmesh.cli.main import main

sys.exit(main())
