"""``python -m nni_asng`` is the ``nni-asng`` command."""
import sys

from .app.cli import main

if __name__ == '__main__':
    sys.exit(main())
