"""`python -m router.emulator ARGS` == `ollama-router emulate ARGS`."""

import sys

from router.emulator.command import main

sys.exit(main())
