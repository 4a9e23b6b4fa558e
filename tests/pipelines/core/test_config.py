from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.config import DEFAULT_DETECTORS, RunConfig, load_config, parse_config
from poisonguard.pipelines.core.errors import ConfigError
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.runner import execute


def test_defaults_work_without_a_file():
    config = load_config(None)
    assert config.detection.alpha == 0.01
    assert config.detection.detectors == DEFAULT_DETECTORS
    assert config.dataset.label is None and config.store.url is None


@pytest.mark.parametrize(
    "text, each",
    [
        # Two detectors at 0.01 add up to 0.02: within the default budget.
        ('detectors = ["outlier.ecod", "label.knn"]\n', 0.01),
        # Seven at 0.01 would add up to 0.07: the default 0.05 budget is split.
        ("detectors = [" + ", ".join(['"d"'] * 7) + "]\n", 0.05 / 7),
        ('alpha = 0.005\nmax_false_positive_rate = 0.03\ndetectors = ["a", "b", "c"]\n', 0.005),
        ('alpha = 0.05\nmax_false_positive_rate = 0.03\ndetectors = ["a", "b", "c"]\n', 0.01),
    ],
)
def test_detectors_share_the_overall_false_positive_budget(text, each):
    detection = parse_config("[detection]\n" + text).detection
    assert detection.detector_alpha == pytest.approx(each)
    assert detection.detector_alpha * len(detection.detectors) <= detection.max_false_positive_rate + 1e-12


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "p.toml").write_text('[dataset]\nlabel = "y"\nreference = "ref.csv"\n[signing]\nkey = "/abs/k.pem"\n')
    config = load_config(folder / "p.toml")
    assert config.dataset.reference == (folder / "ref.csv").resolve()
    assert config.signing.key == Path("/abs/k.pem")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[dataset\n", r"c\.toml: not valid TOML"),
        ('[dataset]\nlabl = "y"\n', r"c\.toml: dataset\.labl: Extra inputs are not permitted"),
        ("[detection]\nalpha = 2\n", r"c\.toml: detection\.alpha: Input should be less than 0\.5"),
        ('[dataset]\nname = "../x"\n', r"dataset\.name: Value error, must be a plain name"),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


toml_text = st.text(alphabet=st.sampled_from(list('[]="abc.\n 0123=xyz#')), max_size=60)


@settings(max_examples=200, deadline=None)
@given(toml_text)
def test_any_text_gives_a_config_or_a_config_error(text):
    try:
        config = parse_config(text, source="fuzz.toml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.toml: ")
    else:
        assert isinstance(config, RunConfig)


@settings(max_examples=100, deadline=None)
@given(alpha=st.floats(min_value=1e-6, max_value=0.49), label=st.text(alphabet="abcxyz_", min_size=1, max_size=10))
def test_valid_values_round_trip(alpha, label):
    config = parse_config(f'[dataset]\nlabel = "{label}"\n[detection]\nalpha = {alpha!r}\n')
    assert config.dataset.label == label and config.detection.alpha == alpha


def test_no_detectors_and_nothing_else_to_check_with_is_refused(tmp_path):
    # It published every row, signed as clean, without one check.
    config = tmp_path / "none.toml"
    config.write_text('[dataset]\nlabel = "y"\n[detection]\ndetectors = []\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"none.toml: detection.detectors is empty and there is no reference or suite"):
        make_settings([tmp_path / "b.csv"], out=tmp_path / "out", config_path=config)
    (tmp_path / "trusted.csv").write_text("x,y\n1,a\n", encoding="utf-8")
    with_reference = make_settings([tmp_path / "b.csv"], out=tmp_path / "out", config_path=config,
                                   reference=tmp_path / "trusted.csv")
    assert with_reference.config.detection.detectors == []  # the expectations alone may judge the rows


@pytest.mark.parametrize("key", ["numeric", "categorical", "ignore"])
def test_a_column_the_config_names_must_exist(tmp_path, key):
    # A typo ('nope') was silently dropped: the column it meant was then typed by inference.
    (tmp_path / "b.csv").write_text("id,x,y\n" + "".join(f"{i},{i % 5},{'ab'[i % 2]}\n" for i in range(40)), encoding="utf-8")
    config = tmp_path / "typo.toml"
    config.write_text(f'[dataset]\nlabel = "y"\nid = "id"\n{key} = ["x", "nope"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"typo.toml: dataset.{key} names 'nope', which neither the batch nor"):
        execute(make_settings([tmp_path / "b.csv"], out=tmp_path / "out", config_path=config))
    assert not (tmp_path / "out").exists()
