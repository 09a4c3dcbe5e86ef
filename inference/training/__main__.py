"""`python -m inference.training --help` (in the training environment: `make train`)."""

import sys

from inference.training.pipeline import main

sys.exit(main())
