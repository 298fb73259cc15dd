"""`python -m minitl ...` is the `minitl` command."""
import sys

from .cli import main

if __name__ == "__main__":  # importing the module (pkgutil.walk_packages does) runs nothing
    sys.exit(main())
