"""Load and save checkpoints in the released Kronos layout.

A checkpoint is a directory holding `config.json` (the config dataclass fields) and
`model.safetensors` (the state dict under the released parameter names). Weights are read
with safetensors only, never unpickled.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from kronos_sk._files import write_atomically
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import DEFAULT_DEVICE, resolve_device, resolve_dtype

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# Buffers derived from the config: a checkpoint may omit them; if present they are loaded.
_DERIVED_BUFFERS = ("rotary.inv_freq", "bsq.basis", "bsq.group_basis")

# The bundled default model: `pretrained/tokenizer` and `pretrained/predictor` in the package;
# `pretrained/predictor/inference.json` holds the window it was trained on.
DEFAULT_MODEL_DIR = Path(__file__).parent / "pretrained"
# Beside config.json: settings for using a predictor that config.json does not hold.
INFERENCE_FILE = "inference.json"
INFERENCE_KEYS = ("max_context", "spread", "tail", "ramp", "drift", "candles")
# The released Kronos-small and Kronos-base windows; config.json does not record it.
RELEASED_CONTEXT = 512
# Kronos-mini was trained on 2048-token windows; it is the released predictor of this shape.
MINI_CONTEXT = 2048
MINI_SHAPE = {"d_model": 256, "n_layers": 4, "n_heads": 4, "ff_dim": 512}


@dataclass(frozen=True)
class Spread:
    """A model's own spread: the drift of `kronos_sk.calibration.PathCalibration` with
    ``1 + g_H = factor``, ``k = tail`` and ramp power ``p = ramp``
    (`kronos_sk.calibration.widen_paths`), and the share ``drift`` of the paths' mean move
    from the last close that they keep (`kronos_sk.calibration.keep_drift`), fitted once on
    validation windows after training and stored in the checkpoint's inference.json
    (`model_spread`); `kronos_sk.calibration.apply_spread` applies both (the share to the
    mean path's candles as well). With ``candles``, it also draws each path's open gaps
    from its context's and makes its wicks no longer, relative to its close moves, than
    the context's (`kronos_sk.calibration.shape_candles`), before the mean path's candles
    are drawn in.
    """

    factor: float = 1.0
    tail: float = 0.0
    ramp: float = 1.0
    drift: float = 1.0
    candles: bool = False

    @property
    def widens(self) -> bool:
        """Whether it widens the paths (factor 1 and tail 0 leave their width as sampled)."""
        return (self.factor, self.tail) != (1.0, 0.0)

    @property
    def adjusts(self) -> bool:
        """Whether it changes the paths at all (it widens them, keeps less than the whole
        drift, or shapes their candles)."""
        return self.widens or self.drift != 1.0 or self.candles


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or inconsistent."""


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """Local directory of a checkpoint path, or of a hub id such as `NeoQuasar/Kronos-small`.

    Hub ids are downloaded with `huggingface_hub` (an optional dependency) when online.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if path.is_file():
        raise CheckpointError(f"{text!r} is a file; pass the checkpoint directory that holds "
                              f"it, {str(path.parent)!r}")
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise CheckpointError(f"checkpoint directory {text!r} does not exist")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{text!r} is not a local directory; to fetch it as a hub id install the hub "
            "extra: pip install 'kronos-sk[hub]'") from None
    try:
        return Path(snapshot_download(text, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE,
                                                            INFERENCE_FILE]))
    except Exception as error:  # offline, unknown repo, no permission: all end here
        raise CheckpointError(
            f"could not fetch hub checkpoint {text!r} ({type(error).__name__}: {error}); "
            "pass a local directory holding config.json and model.safetensors") from error


def default_checkpoint(kind: str) -> Path:
    """Directory of the bundled default "tokenizer" or "predictor"."""
    if kind not in ("tokenizer", "predictor"):
        raise ValueError(f"kind must be 'tokenizer' or 'predictor', got {kind!r}")
    directory = DEFAULT_MODEL_DIR / kind
    if not (directory / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"no bundled default {kind} in {DEFAULT_MODEL_DIR}; pass a checkpoint directory "
            "or hub id (model=..., tokenizer=...)")
    return directory


def _inference_settings(directory: Path) -> dict:
    """The `INFERENCE_FILE` beside a checkpoint's config.json, or {} without one."""
    file = directory / INFERENCE_FILE
    if not file.is_file():
        return {}
    settings = _json_object(file)
    unknown = sorted(set(settings) - set(INFERENCE_KEYS))
    if unknown:
        raise CheckpointError(f"{file}: unknown key(s) {unknown}; expected a subset of "
                              f"{list(INFERENCE_KEYS)}")
    context = settings.get("max_context", 1)
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise CheckpointError(f"{file}: max_context must be a positive integer, got "
                              f"{context!r}")
    for key, default, kind, allowed in (
            ("spread", 1.0, "a positive number", lambda v: v > 0),
            ("tail", 0.0, "a number >= 0", lambda v: v >= 0),
            ("ramp", 1.0, "a positive number", lambda v: v > 0),
            ("drift", 1.0, "a number in [0, 1]", lambda v: 0 <= v <= 1)):
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and allowed(value)):
            raise CheckpointError(f"{file}: {key} must be {kind}, got {value!r}")
    if not isinstance(settings.get("candles", False), bool):
        raise CheckpointError(f"{file}: candles must be true or false, got "
                              f"{settings['candles']!r}")
    return settings


def model_context(model: str | os.PathLike) -> int:
    """The predictor window `model` was trained on, in tokens.

    From the checkpoint itself: ``max_context`` of an `INFERENCE_FILE` beside its
    config.json when there is one (the bundled model has one; the training recipes write
    one); else the released window of its shape: 2048 for the Kronos-mini shape (d_model
    256, 4 layers, 4 heads, ff_dim 512), 512 otherwise (Kronos-small and Kronos-base).
    """
    directory = resolve_checkpoint(model)
    settings = _inference_settings(directory)
    if "max_context" in settings:
        return settings["max_context"]
    config = read_config(directory)
    if all(config.get(key) == size for key, size in MINI_SHAPE.items()):
        return MINI_CONTEXT
    return RELEASED_CONTEXT


def model_spread(model: str | os.PathLike) -> Spread:
    """How the model's own paths are adjusted: ``spread``, ``tail``, ``ramp`` and
    ``drift`` of its `INFERENCE_FILE`, fitted on validation windows after training, and
    ``candles`` (see `kronos_sk.calibration.apply_spread`);
    ``Spread()`` (the paths as sampled) for a checkpoint without them, as every released
    checkpoint; a linear ramp where ``ramp`` is not given, the whole drift where ``drift``
    is not, the candles as sampled where ``candles`` is not.
    """
    settings = _inference_settings(resolve_checkpoint(model))
    return Spread(float(settings.get("spread", 1.0)), float(settings.get("tail", 0.0)),
                  float(settings.get("ramp", 1.0)), float(settings.get("drift", 1.0)),
                  settings.get("candles", False))


def read_config(directory: Path) -> dict:
    file = directory / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a checkpoint directory needs {CONFIG_FILE}")
    return _json_object(file)


def _json_object(file: Path) -> dict:
    """The JSON object in `file`; a CheckpointError naming the file otherwise."""
    try:
        values = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(values).__name__}")
    return values


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    file = directory / WEIGHTS_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a checkpoint directory needs {WEIGHTS_FILE}")
    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{file}: not a readable safetensors file ({error})") from None


def _read_header(directory: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape from the safetensors header, without reading any tensor."""
    file = directory / WEIGHTS_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a checkpoint directory needs {WEIGHTS_FILE}")
    try:
        with safe_open(file, framework="pt") as opened:
            return {key: tuple(opened.get_slice(key).get_shape()) for key in opened.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{file}: not a readable safetensors file ({error})") from None


def _check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                  source: str) -> None:
    """Name any missing, unexpected or misshapen key of `found` against `expected`."""
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key(s) {unexpected[:5]} for this config")
    missing = sorted(k for k in set(expected) - set(found) if not k.endswith(_DERIVED_BUFFERS))
    if missing:
        raise CheckpointError(f"{source}: missing key(s) {missing[:5]}")
    for key, shape in found.items():
        if shape != expected[key]:
            raise CheckpointError(f"{source}: key '{key}' has shape {shape} but the config needs "
                                  f"{expected[key]}")


def load_state(module: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Copy `weights` into `module`, naming any missing, unexpected or misshapen key.

    A tensor whose kind differs from the module's (integers for float weights, or the
    reverse) or that holds NaN or infinity is refused; a float tensor of another precision
    (float16, bfloat16, float64) is cast with a warning, since its values carry that precision.
    """
    expected = module.state_dict()
    _check_shapes({k: tuple(v.shape) for k, v in expected.items()},
                  {k: tuple(v.shape) for k, v in weights.items()}, source)
    recast = []
    for key, tensor in weights.items():
        wanted = expected[key].dtype
        if tensor.is_floating_point() != wanted.is_floating_point:
            raise CheckpointError(f"{source}: key '{key}' is {tensor.dtype} but the model needs "
                                  f"{wanted}; this is not a Kronos checkpoint")
        if tensor.is_floating_point():
            bad = tensor.numel() - int(torch.isfinite(tensor).sum())
            if bad:
                raise CheckpointError(f"{source}: key '{key}' holds {bad} NaN or infinite "
                                      f"value(s) of {tensor.numel()}; the weights are corrupt")
            if tensor.dtype != wanted:
                recast.append(key)
    if recast:
        warnings.warn(f"{source}: {len(recast)} tensor(s) stored as "
                      f"{weights[recast[0]].dtype} (first '{recast[0]}') are cast to "
                      f"{expected[recast[0]].dtype}; they keep the stored precision",
                      UserWarning, stacklevel=3)
    module.load_state_dict(weights, strict=False)


def check_checkpoint(kind: str, name_or_path: str | os.PathLike,
                     ) -> tuple[Path, TokenizerConfig | PredictorConfig]:
    """Validate a "tokenizer" or "predictor" checkpoint without allocating its weights.

    The config must be valid and every key and shape of the safetensors header must be the
    ones it implies. Returns the directory and the config.
    """
    cls, config_cls = {"tokenizer": (KronosTokenizer, TokenizerConfig),
                       "predictor": (KronosPredictor, PredictorConfig)}[kind]
    directory = resolve_checkpoint(name_or_path)
    try:
        config = config_cls.from_dict(read_config(directory),
                                      source=str(directory / CONFIG_FILE))
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    with torch.device("meta"):  # shapes only: no memory, whatever sizes the config names
        skeleton = cls(config)
    _check_shapes({k: tuple(v.shape) for k, v in skeleton.state_dict().items()},
                  _read_header(directory), str(directory / WEIGHTS_FILE))
    return directory, config


def _load(kind: str, name_or_path, device, precision) -> KronosTokenizer | KronosPredictor:
    device = resolve_device(device)
    dtype = resolve_dtype(precision, device)
    directory, config = check_checkpoint(kind, name_or_path)
    module = (KronosTokenizer if kind == "tokenizer" else KronosPredictor)(config)
    load_state(module, _read_weights(directory), str(directory / WEIGHTS_FILE))
    return module.to(device=device, dtype=dtype).eval()


def load_tokenizer(name_or_path: str | os.PathLike,
                   device: str | torch.device = DEFAULT_DEVICE,
                   precision: str | torch.dtype = "float32") -> KronosTokenizer:
    """Load a released-format tokenizer directory (or hub id) in eval mode.

    `device` "auto" (the default) picks CUDA, then MPS, then the CPU; `precision` is
    "float32" or "bfloat16".
    """
    return _load("tokenizer", name_or_path, device, precision)


def load_predictor(name_or_path: str | os.PathLike,
                   device: str | torch.device = DEFAULT_DEVICE,
                   precision: str | torch.dtype = "float32") -> KronosPredictor:
    """Load a released-format predictor directory (or hub id) in eval mode.

    `device` "auto" (the default) picks CUDA, then MPS, then the CPU; `precision` is
    "float32" or "bfloat16".
    """
    return _load("predictor", name_or_path, device, precision)


def save_checkpoint(module: KronosTokenizer | KronosPredictor,
                    directory: str | os.PathLike) -> Path:
    """Write `config.json` and `model.safetensors` (float32, released names) to `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(module.config.to_dict(), indent=2, sort_keys=True) + "\n"
    write_atomically(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text))
    state = {key: value.detach().to("cpu").contiguous()
             for key, value in module.state_dict().items()}
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in state.items()}
    write_atomically(directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp))
    return directory
