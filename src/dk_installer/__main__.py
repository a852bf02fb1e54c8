"""`python -m dk_installer`: how the runtime venv, the launcher and the service run the package."""

import os

from dk_installer.cli import main

os.environ.setdefault("DK_INSTALLER_LAUNCHED_BY", "direct")
main()
