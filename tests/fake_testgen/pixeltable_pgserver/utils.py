from pathlib import Path

POSTGRES_VERSIONS = {16: Path(__file__).parent / "pginstall" / "bin"}
