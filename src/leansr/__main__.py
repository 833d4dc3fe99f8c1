import sys

from leansr.cli import main

sys.exit(main())
