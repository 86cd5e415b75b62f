import sys

from reference_cryptobot.server import main

sys.exit(main())
