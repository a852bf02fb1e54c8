"""`python -m dk_installer`: how the runtime venv, the launcher and the service run the package."""

import os
import sys

from dk_installer.logpump import LOG_PUMP

if sys.argv[1:2] == [LOG_PUMP]:
    # Beside TestGen at every start: the pump imports what it needs, not the CLI.
    from dk_installer.logpump import main as pump

    pump(sys.argv[2:])
else:
    from dk_installer.cli import main

    os.environ.setdefault("DK_INSTALLER_LAUNCHED_BY", "direct")
    main()
