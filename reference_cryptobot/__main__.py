"""`python -m reference_cryptobot --flavor docker|native --port PORT ...`"""

import sys

from reference_cryptobot.server import main

sys.exit(main())
