"""Build the sample datasets in ``data_samples/``: a trusted reference and a poisoned batch.

For each dataset this writes, into ``data_samples/<name>/``:

``reference.csv``
    A stratified ~30% of the source rows, untouched: the trusted reference.
``batch.csv``
    The other ~70% with poison injected (label flips, far-away injected rows,
    schema-broken rows).
``truth.csv``
    ``row_id, attack, detail``: which batch rows were poisoned and how.
``poisonguard.toml``
    The dataset config poisonguard runs with.

Every value is handled as the text it would be in a CSV file, so the files
show exactly what a reader of the batch would see (penguins keeps its "NA"
missing values as they are in the source). Row ids are a random permutation
of ``<prefix>-0001..`` over all rows, and both files are sorted by id, so
neither an id nor a position gives a poisoned row away.

The outputs are committed; rerun only to change them::

    python data_samples/make_samples.py           # rewrite the samples
    python data_samples/make_samples.py --check   # verify the committed files are current

Sources: Palmer penguins (``penguins/source.csv``, copied from the
``palmerpenguins`` package, CC0), and scikit-learn's bundled
``load_breast_cancer`` and ``load_wine`` (UCI, CC BY 4.0), read from the
installed scikit-learn, no download.
"""
from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SEED = 20251128
REFERENCE_FRACTION = 0.3
FLIP_FRACTION = 0.05
N_FAR_ROWS = 3
# Injected rows sit this many feature ranges beyond the feature's maximum.
FAR_RANGES = (5.0, 10.0)


@dataclass(frozen=True)
class Sample:
    """One dataset: where it comes from and how to break two of its rows."""

    name: str
    prefix: str
    label: str
    numeric: list[str]
    categorical: list[str]
    bad_number_column: str  # gets the text "n/a?"
    broken_column: str  # gets ``broken_value`` (unknown category or empty label)
    broken_value: str
    broken_attack: str
    broken_from: str | None = None  # only break a row whose broken_column has this value


def load_penguins() -> pd.DataFrame:
    """Palmer penguins from the committed copy of the package's CSV, as text."""
    return pd.read_csv(HERE / "penguins" / "source.csv", dtype=str, keep_default_na=False)


def _sklearn_frame(loader, label: str) -> pd.DataFrame:
    """A bundled scikit-learn dataset as text, with class names as labels."""
    bunch = loader(as_frame=True)
    features = bunch.data.map(repr)  # shortest text that round-trips, as in the source CSV
    labels = pd.Series(np.asarray(bunch.target_names)[bunch.target.to_numpy()], name=label)
    return pd.concat([features, labels], axis=1).astype(str)


def load_breast_cancer_frame() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return _sklearn_frame(load_breast_cancer, "diagnosis")


def load_wine_frame() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return _sklearn_frame(load_wine, "cultivar")


PENGUINS = Sample(
    name="penguins",
    prefix="pen",
    label="species",
    numeric=["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"],
    categorical=["island", "sex"],
    bad_number_column="bill_length_mm",
    broken_column="island",
    broken_value="Anvers",  # a real island near Palmer Station, not in the data
    broken_attack="schema_unknown_category",
)


def _samples() -> list[tuple[Sample, Callable[[], pd.DataFrame]]]:
    breast_cancer = load_breast_cancer_frame()
    wine = load_wine_frame()
    return [
        (PENGUINS, load_penguins),
        (
            Sample(
                name="breast_cancer",
                prefix="bc",
                label="diagnosis",
                numeric=[c for c in breast_cancer.columns if c != "diagnosis"],
                categorical=[],
                bad_number_column="mean radius",
                # The original UCI file codes the diagnosis "M"/"B": a batch from
                # another export carries a label value the reference never had.
                broken_column="diagnosis",
                broken_value="M",
                broken_attack="schema_unknown_category",
                broken_from="malignant",
            ),
            lambda: breast_cancer,
        ),
        (
            Sample(
                name="wine",
                prefix="wine",
                label="cultivar",
                numeric=[c for c in wine.columns if c != "cultivar"],
                categorical=[],
                bad_number_column="alcohol",
                broken_column="cultivar",
                broken_value="",
                broken_attack="schema_empty_label",
            ),
            lambda: wine,
        ),
    ]


def _decimals(texts: pd.Series) -> int:
    """Decimal places a numeric column is usually written with (trailing zeros ignored).

    The most common count, not the largest: one stray ``9.899999`` should not
    make injected values look different from the rest of the column.
    """
    places = texts.str.extract(r"\.(\d*?)0*$", expand=False).dropna().str.len()
    if places.empty:
        return 0
    counts = places.value_counts()
    return int(counts[counts == counts.max()].index.max())


def _format_like(value: float, texts: pd.Series) -> str:
    """Write ``value`` the way the column's existing values are written."""
    written = texts[pd.to_numeric(texts, errors="coerce").notna()]
    if not written.str.contains(".", regex=False).any():
        return str(int(round(value)))
    return repr(float(round(value, _decimals(written))))


def _far_rows(sample: Sample, source: pd.DataFrame, reference: pd.DataFrame, rng) -> pd.DataFrame:
    """New rows whose numeric features are 5-10 ranges beyond each maximum."""
    rows = []
    for _ in range(N_FAR_ROWS):
        label = str(rng.choice(sorted(source[sample.label].unique())))
        row = {column: "" for column in source.columns}
        row[sample.label] = label
        same_class = reference[reference[sample.label] == label]
        for column in sample.categorical:
            # A value this class really has, so only the numbers give it away.
            row[column] = str(rng.choice(sorted(same_class[column].unique())))
        for column in sample.numeric:
            values = pd.to_numeric(source[column], errors="coerce").dropna()
            span = float(values.max() - values.min())
            row[column] = _format_like(values.max() + rng.uniform(*FAR_RANGES) * span, source[column])
        rows.append(row)
    return pd.DataFrame(rows, columns=source.columns)


def build(sample: Sample, source: pd.DataFrame, out: Path) -> dict[str, int]:
    """Split ``source``, poison the batch and write the four files into ``out``.

    Returns the number of rows per file and per attack.
    """
    rng = np.random.default_rng([SEED, zlib.crc32(sample.name.encode())])
    reference, batch = train_test_split(
        source,
        train_size=REFERENCE_FRACTION,
        stratify=source[sample.label],
        random_state=int(rng.integers(2**31)),
    )
    reference, batch = reference.copy(), batch.copy()
    truth: list[tuple[object, str, str]] = []  # (index in batch, attack, detail)

    # Label flips, each to another class chosen at random.
    classes = sorted(source[sample.label].unique())
    positions = rng.permutation(len(batch))
    n_flips = int(round(FLIP_FRACTION * len(batch)))
    for position in positions[:n_flips]:
        index = batch.index[position]
        old = batch.at[index, sample.label]
        new = str(rng.choice([c for c in classes if c != old]))
        batch.at[index, sample.label] = new
        truth.append((index, "label_flip", f"{sample.label} {old!r} -> {new!r}"))

    # Schema-broken rows: two clean rows other than the flipped ones.
    untouched = [batch.index[p] for p in positions[n_flips:]]
    numeric_ok = [i for i in untouched if pd.notna(pd.to_numeric(batch.at[i, sample.bad_number_column], errors="coerce"))]
    bad_number = numeric_ok[0]
    old = batch.at[bad_number, sample.bad_number_column]
    batch.at[bad_number, sample.bad_number_column] = "n/a?"
    truth.append((bad_number, "schema_bad_number", f"{sample.bad_number_column} {old!r} -> 'n/a?'"))
    broken = next(
        i
        for i in untouched
        if i != bad_number
        and batch.at[i, sample.broken_column] not in ("", "NA")
        and sample.broken_from in (None, batch.at[i, sample.broken_column])
    )
    old = batch.at[broken, sample.broken_column]
    batch.at[broken, sample.broken_column] = sample.broken_value
    truth.append((broken, sample.broken_attack, f"{sample.broken_column} {old!r} -> {sample.broken_value!r}"))

    # Far-away injected rows with a plausible label.
    far = _far_rows(sample, source, reference, rng)
    far.index = [f"injected-{k}" for k in range(len(far))]
    for index, row in far.iterrows():
        truth.append((index, "injected_outlier", f"new row, numeric features 5-10 ranges above the max, {sample.label} {row[sample.label]!r}"))
    batch = pd.concat([batch, far])

    # Ids: a random permutation over every row, so an id says nothing.
    width = max(4, len(str(len(reference) + len(batch))))
    ids = [f"{sample.prefix}-{n:0{width}d}" for n in rng.permutation(len(reference) + len(batch)) + 1]
    reference.insert(0, "row_id", ids[: len(reference)])
    batch.insert(0, "row_id", ids[len(reference) :])
    truth_frame = pd.DataFrame(
        [(batch.at[index, "row_id"], attack, detail) for index, attack, detail in truth],
        columns=["row_id", "attack", "detail"],
    ).sort_values(["attack", "row_id"])

    out.mkdir(parents=True, exist_ok=True)
    csv = {"index": False, "lineterminator": "\n"}
    reference.sort_values("row_id").to_csv(out / "reference.csv", **csv)
    batch.sort_values("row_id").to_csv(out / "batch.csv", **csv)
    truth_frame.to_csv(out / "truth.csv", **csv)
    (out / "poisonguard.toml").write_text(_config(sample, len(reference)), encoding="utf-8")

    counts = {"reference": len(reference), "batch": len(batch)}
    counts.update(truth_frame["attack"].value_counts().sort_index().to_dict())
    return counts


def _toml_list(items: list[str]) -> str:
    if not items:
        return "[]"
    quoted = ",\n".join(f"    {_toml_string(item)}" for item in items)
    return f"[\n{quoted},\n]"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(sample: Sample, n_reference: int) -> str:
    # Every sample uses the default alpha: detectors extrapolate the tail of
    # small references instead of stopping at 1 / (calibration rows + 1).
    alpha = 0.01
    why = ""
    return (
        f"# poisonguard config for the {sample.name} sample (written by make_samples.py).\n"
        "# Paths are relative to this file's folder.\n"
        "[dataset]\n"
        f"name = {_toml_string(sample.name)}\n"
        f"label = {_toml_string(sample.label)}\n"
        'id = "row_id"\n'
        'reference = "reference.csv"\n'
        f"numeric = {_toml_list(sample.numeric)}\n"
        f"categorical = {_toml_list(sample.categorical)}\n"
        "\n"
        "[detection]\n"
        f"{why}"
        f"alpha = {alpha}\n"
    )


def _check_configs(root: Path, names: list[str]) -> None:
    """Parse each written config with poisonguard's own loader."""
    from poisonguard.pipelines.core.config import load_config

    for name in names:
        config = load_config(root / name / "poisonguard.toml")
        assert config.dataset.reference == (root / name / "reference.csv").resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rebuild in a temporary folder and compare with the committed files")
    args = parser.parse_args(argv)

    samples = _samples()
    names = [sample.name for sample, _ in samples]
    if not args.check:
        for sample, load in samples:
            counts = build(sample, load(), HERE / sample.name)
            print(f"{sample.name}: {counts}")
        _check_configs(HERE, names)
        return 0

    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for sample, load in samples:
            build(sample, load(), Path(tmp) / sample.name)
            for file in ("reference.csv", "batch.csv", "truth.csv", "poisonguard.toml"):
                committed = HERE / sample.name / file
                if not committed.exists() or not filecmp.cmp(committed, Path(tmp) / sample.name / file, shallow=False):
                    stale.append(f"{sample.name}/{file}")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    print("samples are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
