"""Where the project's files live, defined once: the bundled model and road graph in `assets/`, the
user's workspace, the server's file settings. Everything else asks this module instead of finding
files relative to its own source."""
import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent      # the clone: assets/, workspace/ and stmgt.toml sit here
ASSETS = CHECKOUT / "assets"
BUNDLED_RUN = ASSETS / "model"
HCMC_GRAPH_DIR = ASSETS / "hcmc"


def workspace_root() -> Path:
    """The user's datasets and runs: `STMGT_WORKSPACE`, else `workspace/` in the clone (git-ignored)."""
    return Path(os.environ.get("STMGT_WORKSPACE", CHECKOUT / "workspace"))


def server_config() -> Path:
    """The server's file settings (which folders the dashboard may read): `STMGT_CONFIG`, else `stmgt.toml`."""
    return Path(os.environ.get("STMGT_CONFIG", CHECKOUT / "stmgt.toml"))
