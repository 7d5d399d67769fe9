import sys

from stmgt.cli import main

sys.exit(main())
