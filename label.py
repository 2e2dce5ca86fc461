"""Tag AI-generated images by name, safely: `python label.py FOLDER` (see `--help`; installed: `detective-label`)."""

from detective.label.cli import main

raise SystemExit(main())
