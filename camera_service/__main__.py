import sys

from camera_service.cli import main

sys.exit(main())
