"""``python -m shopee_match`` runs the ``shopee-match`` command."""

import sys

from .cli import main

sys.exit(main())
