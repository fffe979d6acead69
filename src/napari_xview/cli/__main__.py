"""``python -m napari_xview.cli``: the ``napari-xview`` command."""

import sys

from napari_xview.cli import main

sys.exit(main())
