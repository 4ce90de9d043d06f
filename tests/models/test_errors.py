import pytest

import archlab
from archlab.errors import ConfigError, IncompatibleError, UnknownNameError


def test_unknown_model_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'crnet'"):
        archlab.create_model("crnett", num_classes=2)


def test_unknown_head_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'linear'"):
        archlab.create_model("crnet", num_classes=2, head="lineer")


def test_unknown_model_option_suggests():
    with pytest.raises(UnknownNameError, match="channels"):
        archlab.create_model("crnet", num_classes=2, chanels=(1, 2, 3))


def test_unknown_head_option():
    with pytest.raises(UnknownNameError, match="drop_rate"):
        archlab.create_model("crnet", num_classes=2, head="linear", head_kwargs={"dropout_rate": 0.1})


def test_input_too_small_for_backbone():
    with pytest.raises(IncompatibleError, match="mnist_cnn cannot take 1x8x8"):
        archlab.create_model("mnist_cnn", num_classes=10, in_chans=1, input_size=8)


def test_bad_num_classes_and_in_chans():
    with pytest.raises(ConfigError, match="num_classes"):
        archlab.create_model("crnet", num_classes=0)
    with pytest.raises(ConfigError, match="in_chans"):
        archlab.create_model("crnet", num_classes=2, in_chans=-1)


def test_errors_are_value_errors():
    # users can catch the builtin type
    with pytest.raises(ValueError):
        archlab.create_model("nope", num_classes=2)
