import sys

from nnstudy.cli import main

sys.exit(main())
