"""dk-installer: install, run and manage DataKitchen's DataOps TestGen with one command.

README's Development section maps the modules; `python build.py` makes the single file that
users download (dk_installer.py) from this package.
"""

__version__ = "0.1.0"
