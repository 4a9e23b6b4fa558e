"""A quarantine store filled by a real run on the tiny data, for the review web tests."""
import os
from pathlib import Path

import pandas as pd

from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.runner import execute
from tests.tiny_data import UNKNOWN_COLOUR, write_tiny_dataset

TOKEN = "test-review-token-0123456789"
SCRIPT = "<script>alert(1)</script>"


def fill_tiny_store(folder: Path) -> str:
    """Run the pipeline on the tiny data (one cell holding ``SCRIPT``); return the store URL."""
    tiny = write_tiny_dataset(folder / "data")
    batch = pd.read_csv(tiny["batch"], dtype=str)
    batch.loc[batch["id"] == UNKNOWN_COLOUR, "shade"] = SCRIPT
    batch.to_csv(tiny["batch"], index=False)
    previous = os.environ.get("POISONGUARD_HOME")
    os.environ["POISONGUARD_HOME"] = str(folder / "state")
    try:
        settings = make_settings([tiny["batch"]], out=folder / "out", config_path=tiny["config"])
        execute(settings)
    finally:
        if previous is None:
            os.environ.pop("POISONGUARD_HOME", None)
        else:
            os.environ["POISONGUARD_HOME"] = previous
    return settings.store_url
