"""`python -m minitl ...` is the `minitl` command."""
import sys

from .cli import main

sys.exit(main())
