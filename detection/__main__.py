import sys

from tools.detection_cli import main

sys.exit(main())
