"""A tiny seeded dataset with known poison, shared by the pipeline, CLI and flow tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CENTRES = {"red": (0.0, 0.0), "green": (6.0, 0.0), "blue": (3.0, 6.0)}
FLIPPED = ["b-005", "b-017", "b-029"]
FAR_AWAY = "b-040"
BROKEN_NUMBER = "b-041"
UNKNOWN_COLOUR = "b-042"
POISONED = sorted([*FLIPPED, FAR_AWAY, BROKEN_NUMBER, UNKNOWN_COLOUR])


def _rows(rng: np.random.Generator, per_class: int, prefix: str) -> pd.DataFrame:
    frames = []
    for label, (cx, cy) in CENTRES.items():
        frames.append(
            pd.DataFrame(
                {
                    "x": np.round(rng.normal(cx, 0.7, per_class), 3),
                    "y": np.round(rng.normal(cy, 0.7, per_class), 3),
                    "shade": rng.choice(["light", "dark"], per_class),
                    "label": label,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1).reset_index(drop=True)
    frame.insert(0, "id", [f"{prefix}-{i:03d}" for i in range(len(frame))])
    return frame


def write_tiny_dataset(folder: Path) -> dict[str, Path]:
    """Write reference.csv (trusted, clean) and batch.csv (with POISONED rows).

    Returns
    -------
    dict with keys ``reference``, ``batch``, ``config``.
    """
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    reference = _rows(rng, 60, "r")
    batch = _rows(rng, 15, "b").astype({"x": object, "y": object})
    labels = list(CENTRES)
    for row_id in FLIPPED:
        at = batch.index[batch["id"] == row_id][0]
        batch.loc[at, "label"] = labels[(labels.index(batch.loc[at, "label"]) + 1) % 3]
    batch.loc[batch["id"] == FAR_AWAY, ["x", "y"]] = [60.0, -45.0]
    batch.loc[batch["id"] == BROKEN_NUMBER, "x"] = "oops"
    batch.loc[batch["id"] == UNKNOWN_COLOUR, "shade"] = "ultraviolet"
    paths = {"reference": folder / "reference.csv", "batch": folder / "batch.csv", "config": folder / "tiny.toml"}
    reference.drop(columns=["id"]).to_csv(paths["reference"], index=False)
    batch.to_csv(paths["batch"], index=False)
    paths["config"].write_text(
        '[dataset]\nname = "tiny"\nlabel = "label"\nid = "id"\nreference = "reference.csv"\n'
        "[detection]\nalpha = 0.01\n",
        encoding="utf-8",
    )
    return paths
