"""Study files: grid expansion, resolution and every bad input (clear message, nothing run)."""

import pytest

from archlab.errors import ConfigError, DataError, UnknownNameError
from archlab.study.config import RunKey, Study, load_study
from archlab.study.runner import preflight

from .conftest import study_dict


def test_grid_and_resolution():
    s = Study.model_validate(study_dict(seeds=3))
    assert s.seeds == [0, 1, 2]
    grid = s.grid()
    assert len(grid) == 6 and grid[0] == RunKey(dataset="synthetic28", variant="a", seed=0)
    cfg = s.resolve(RunKey(dataset="synthetic28", variant="b", seed=2))
    assert cfg.seed == 2 and cfg.model.head == "mlp" and cfg.model.head_kwargs == {"hidden": [16]}
    assert cfg.epochs == 2 and cfg.data.name == "synthetic"
    # the data (and so the split) is identical for every variant
    assert s.resolve(grid[0]).data == s.resolve(grid[1]).data


def test_training_override_variant():
    s = Study.model_validate(study_dict(variants={"a": {}, "slow": {"train": {"optim": {"lr": 1e-6}}}}))
    cfg = s.resolve(RunKey(dataset="synthetic28", variant="slow", seed=0))
    assert cfg.optim.lr == 1e-6 and cfg.optim.name == "adam"


def test_several_datasets():
    d2 = {**study_dict()["data"], "options": {**study_dict()["data"]["options"], "image_size": 32}}
    s = Study.model_validate({**study_dict(), "data": None, "datasets": [study_dict()["data"], d2]})
    assert list(s.dataset_configs()) == ["synthetic28", "synthetic32"]
    assert len(s.grid()) == 8


@pytest.mark.parametrize(
    "over, message",
    [
        ({"varaints": {}}, "unknown key 'varaints'; did you mean 'variants'"),
        ({"seeds": "five"}, "key 'seeds'"),
        ({"seeds": []}, "seeds is empty"),
        ({"seeds": 0}, "seeds must be at least 1"),
        ({"baseline": "zzz"}, "baseline 'zzz' is not among the variants"),
        ({"train": {"epochs": "many"}}, "key 'epochs'"),
        ({"train": {"epocs": 3}}, "unknown key 'train.epocs'; did you mean 'epochs'"),
        ({"model": {"nmae": "x"}}, "unknown key 'model.nmae'"),
        ({"variants": {"a": {"modle": {}}}}, "unknown key 'variants.a.modle'; did you mean 'model'"),
    ],
)
def test_bad_study_files(write_study, over, message):
    path = write_study(**over)
    with pytest.raises(ConfigError) as exc:
        load_study(path)
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


def test_unknown_model_and_head(write_study):
    with pytest.raises(UnknownNameError, match="did you mean 'mnist_cnn'"):
        preflight(load_study(write_study(model={"name": "mnist_cn"})))
    path = write_study(variants={"a": {}, "b": {"model": {"head": "spinnal_x"}}})
    with pytest.raises(UnknownNameError, match="variant 'b'"):
        preflight(load_study(path))


def test_dataset_not_found(write_study, tmp_path):
    path = write_study(data={"name": "mnist", "root": str(tmp_path / "nothing")})
    with pytest.raises(DataError, match="dataset 'mnist'"):
        preflight(load_study(path))


def test_invalid_yaml(write_study):
    path = write_study("name: x\nvariants: [a\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_study(path)


def test_smoke_section(write_study):
    path = write_study(smoke={"train": {"epochs": 1}, "seeds": [7]})
    s = load_study(path, smoke=True)
    assert s.seeds == [7] and s.resolve(s.grid()[0]).epochs == 1
    with pytest.raises(ConfigError, match="no `smoke:` section"):
        load_study(write_study(), smoke=True)
