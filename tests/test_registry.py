import pytest
from torch import nn

from leansr import LeansrError, create_model, list_models
from leansr.registry import get_model_info, register_model


def test_duplicate_registration_raises():
    name = list_models()[0]
    with pytest.raises(ValueError, match="already registered"):
        register_model(name, scales=(4,))(nn.Identity)


def test_unknown_model_lists_known_names():
    with pytest.raises(LeansrError, match="unknown model 'nope'.*known models"):
        create_model("nope")


def test_list_models_pattern_filters():
    everything = list_models()
    assert everything == sorted(everything)
    first = everything[0]
    assert list_models(first) == [first]
    assert list_models("no-such-*") == []


def test_create_model_records_resolved_hyperparameters():
    name = list_models()[0]
    model = create_model(name)
    assert model.arch == name
    assert "scale" in model.hparams
    again = create_model(name, **model.hparams)
    assert again.hparams == model.hparams


def test_bad_arguments_give_one_clear_error():
    name = list_models()[0]
    with pytest.raises(LeansrError, match="bad arguments"):
        create_model(name, no_such_argument=1)


def test_unsupported_scale_is_refused():
    name = list_models()[0]
    info = get_model_info(name)
    with pytest.raises(LeansrError, match="supports scales"):
        create_model(name, scale=max(info.scales) + 5)
