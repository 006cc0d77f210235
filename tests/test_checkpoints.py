import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos_sk.checkpoints import (CheckpointError, load_predictor, load_tokenizer,
                                   resolve_checkpoint, save_checkpoint)
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor


@pytest.fixture
def model_copy(tmp_path, compat_dir):
    target = tmp_path / "model"
    shutil.copytree(compat_dir / "model", target)
    return target


def test_round_trip_keeps_every_tensor_and_config(tmp_path, compat_dir):
    for load, name in ((load_predictor, "model"), (load_tokenizer, "tokenizer")):
        module = load(compat_dir / name)
        saved = save_checkpoint(module, tmp_path / name)
        assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
        original = load_file(compat_dir / name / "model.safetensors")
        written = load_file(saved / "model.safetensors")
        assert original.keys() == written.keys()
        for key in original:
            assert torch.equal(original[key], written[key]), key
        assert (json.loads((saved / "config.json").read_text())
                == json.loads((compat_dir / name / "config.json").read_text()))


def test_loaded_modules_are_in_eval_mode_with_requested_precision(compat_dir):
    predictor = load_predictor(compat_dir / "model", precision="bfloat16")
    assert not predictor.training
    assert predictor.norm.weight.dtype == torch.bfloat16


def test_missing_directory_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_predictor(tmp_path / "nowhere")


def test_missing_config_names_the_file(model_copy):
    (model_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_predictor(model_copy)


def test_corrupt_config_names_the_file(model_copy):
    (model_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_predictor(model_copy)


def test_unknown_config_key_is_named(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["n_experts"] = 4
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json: unknown key\(s\) \['n_experts'\]"):
        load_predictor(model_copy)


def test_bad_config_value_is_named(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["n_heads"] = 3
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not divisible by n_heads=3"):
        load_predictor(model_copy)


def test_missing_weights_file_names_it(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        load_predictor(model_copy)


def test_corrupt_weights_file_names_it(model_copy):
    (model_copy / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable"):
        load_predictor(model_copy)


def test_shape_mismatch_names_key_and_shapes(model_copy):
    weights = load_file(model_copy / "model.safetensors")
    weights["head.proj_s1.weight"] = torch.zeros(8, 32)
    save_file(weights, model_copy / "model.safetensors")
    with pytest.raises(CheckpointError,
                       match=r"key 'head.proj_s1.weight' has shape \(8, 32\).*\(16, 32\)"):
        load_predictor(model_copy)


def test_missing_and_unexpected_keys_are_named(model_copy):
    weights = load_file(model_copy / "model.safetensors")
    del weights["norm.weight"]
    save_file(weights, model_copy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['norm.weight'\]"):
        load_predictor(model_copy)
    weights["norm.weight"] = torch.ones(32)
    weights["extra.weight"] = torch.ones(2)
    save_file(weights, model_copy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\) \['extra.weight'\]"):
        load_predictor(model_copy)


def test_derived_buffers_may_be_absent(model_copy, compat_dir):
    weights = load_file(model_copy / "model.safetensors")
    for key in [k for k in weights if k.endswith("inv_freq")]:
        del weights[key]
    save_file(weights, model_copy / "model.safetensors")
    loaded = load_predictor(model_copy)
    reference = load_predictor(compat_dir / "model")
    assert torch.equal(loaded.transformer[0].self_attn.rotary.inv_freq,
                       reference.transformer[0].self_attn.rotary.inv_freq)


def test_hub_id_without_network_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="NeoQuasar/Kronos-small"):
        resolve_checkpoint("NeoQuasar/Kronos-small")


def test_fresh_modules_save_and_reload_identically(tmp_path):
    from kronos_sk.nn.predictor import KronosPredictor
    from kronos_sk.nn.tokenizer import KronosTokenizer
    torch.manual_seed(0)
    predictor = KronosPredictor(PredictorConfig(s1_bits=2, s2_bits=2, n_layers=1, d_model=16,
                                                n_heads=2, ff_dim=16, learn_te=False))
    tokenizer = KronosTokenizer(TokenizerConfig(d_model=16, n_heads=2, ff_dim=16, s1_bits=2,
                                                s2_bits=2, group_size=2))
    for module, load in ((predictor, load_predictor), (tokenizer, load_tokenizer)):
        reloaded = load(save_checkpoint(module, tmp_path / type(module).__name__))
        for (key, a), b in zip(module.state_dict().items(), reloaded.state_dict().values()):
            assert torch.equal(a, b), key


def test_model_context_is_read_from_the_checkpoint(tmp_path, compat_dir):
    from kronos_sk import checkpoints
    bundled = checkpoints.DEFAULT_MODEL_DIR / "predictor"
    assert json.loads((bundled / "inference.json").read_text())["max_context"] == \
        checkpoints.model_context(bundled) == 512  # the 0.2 model's training window
    # No inference.json: the released window of the checkpoint's shape.
    assert checkpoints.model_context(compat_dir / "model") == checkpoints.RELEASED_CONTEXT == 512
    mini = tmp_path / "mini"
    save_checkpoint(KronosPredictor(PredictorConfig(d_model=256, n_layers=4, n_heads=4,
                                                    ff_dim=512)), mini)
    assert checkpoints.model_context(mini) == 2048  # the Kronos-mini shape
    # The same shape with an inference.json beside config.json (the bundled model's case).
    (mini / "inference.json").write_text('{"max_context": 300}')
    assert checkpoints.model_context(mini) == 300
    for text in ('{"max_context": 0}', '{"max_context": "long"}', "[1]", "{"):
        (mini / "inference.json").write_text(text)
        with pytest.raises(CheckpointError, match="inference.json"):
            checkpoints.model_context(mini)


def test_packaged_files_include_the_bundled_inference_settings():
    import tomllib
    from kronos_sk import checkpoints
    settings = tomllib.loads((checkpoints.DEFAULT_MODEL_DIR.parents[1] / "pyproject.toml")
                             .read_text())
    patterns = settings["tool"]["setuptools"]["package-data"]["kronos_sk.pretrained"]
    assert "*/inference.json" in patterns
    assert not (checkpoints.DEFAULT_MODEL_DIR / "inference.json").exists()


def rewrite_weights(directory, change):
    weights = load_file(directory / "model.safetensors")
    save_file({key: change(tensor) for key, tensor in weights.items()},
              directory / "model.safetensors")


def test_non_finite_weights_are_refused_by_key(model_copy):
    rewrite_weights(model_copy, lambda t: torch.full_like(t, torch.nan)
                    if t.is_floating_point() else t)
    with pytest.raises(CheckpointError, match=r"key '.*' holds \d+ NaN or infinite value"):
        load_predictor(model_copy)
    rewrite_weights(model_copy, torch.zeros_like)
    weights = load_file(model_copy / "model.safetensors")
    weights["norm.weight"][3] = torch.inf
    save_file(weights, model_copy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'norm.weight' holds 1 NaN or infinite"):
        load_predictor(model_copy)


def test_integer_weights_are_refused_and_half_precision_is_announced(model_copy, compat_dir):
    rewrite_weights(model_copy, lambda t: t.to(torch.int64) if t.is_floating_point() else t)
    with pytest.raises(CheckpointError, match="is torch.int64 but the model needs torch.float32"):
        load_predictor(model_copy)
    shutil.copy(compat_dir / "model" / "model.safetensors", model_copy)
    rewrite_weights(model_copy, lambda t: t.half() if t.is_floating_point() else t)
    with pytest.warns(UserWarning, match="stored as torch.float16.*cast to torch.float32"):
        predictor = load_predictor(model_copy)
    stored = load_file(model_copy / "model.safetensors")["norm.weight"]
    assert torch.equal(predictor.norm.weight.detach(), stored.float())


def test_config_sizes_are_bounded_before_anything_is_allocated(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    (model_copy / "config.json").write_text(json.dumps({**config, "s1_bits": 17}))
    with pytest.raises(ValueError, match="'s1_bits' = 17 exceeds 16"):
        load_predictor(model_copy)


def test_check_checkpoint_compares_the_header_without_reading_weights(model_copy):
    from kronos_sk.checkpoints import check_checkpoint
    directory, config = check_checkpoint("predictor", model_copy)
    assert directory == model_copy and config.d_model == 32
    # Within the bounds but gigabytes of weights: refused from the header, in an instant.
    config = json.loads((model_copy / "config.json").read_text())
    big = {**config, "d_model": 8192, "n_heads": 8, "ff_dim": 65536}
    (model_copy / "config.json").write_text(json.dumps(big))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: key '.*' has shape"):
        check_checkpoint("predictor", model_copy)
