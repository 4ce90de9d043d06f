import textwrap

import pytest

SMALL_DATA = {
    "name": "synthetic",
    "options": {"num_classes": 3, "num_samples": 150, "image_size": 28, "channels": 1, "seed": 2},
    "val_fraction": 0.2,
    "test_fraction": 0.2,
}


def study_dict(**over):
    d = {
        "name": "t",
        "data": SMALL_DATA,
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 2, "batch_size": 30},
        "seeds": [0, 1],
        "baseline": "a",
        "variants": {"a": {"model": {"head": "linear"}}, "b": {"model": {"head": "mlp", "head_kwargs": {"hidden": [16]}}}},
    }
    d.update(over)
    return d


@pytest.fixture
def write_study(tmp_path):
    import yaml

    def write(text=None, **over):
        path = tmp_path / "study.yaml"
        path.write_text(textwrap.dedent(text) if text is not None else yaml.safe_dump(study_dict(**over)))
        return path

    return write
