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


@pytest.mark.parametrize("name,kwargs", [("rlfn", {"channels": 0}), ("ecbsr_m4c8", {"in_channels": 0}),
                                         ("rlfn", {"num_blocks": -1}), ("imdn", {"scale": 0})])
def test_out_of_range_hyperparameters_are_one_clear_error(name, kwargs):
    with pytest.raises(LeansrError, match="out of range|supports scales"):
        create_model(name, **kwargs)


def test_presets_are_data_and_detection_names_the_most_specific_one():
    from leansr.registry import detect

    info = get_model_info("rlfn_ntire")
    assert info.constructor is get_model_info("rlfn").constructor
    assert dict(info.preset.overrides) == {"channels": 46, "mid_channels": 48, "num_blocks": 4}
    assert detect(create_model("rlfn_ntire", scale=2).state_dict()).arch == "rlfn_ntire"
    assert detect(create_model("rlfn", scale=2, channels=40).state_dict()).arch == "rlfn"
