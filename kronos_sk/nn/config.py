"""Configuration dataclasses; their fields are exactly the keys of the released `config.json`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT", bound="_ConfigBase")

# Largest size a config may name: far above the released models (10 + 10 bits, d_model in
# the hundreds), but a config.json is untrusted input and "s1_bits": 30 alone would build a
# 2**30-row embedding, 137 GB, before any weight is read.
LIMITS = {"d_in": 64, "d_model": 16384, "n_heads": 256, "ff_dim": 65536, "n_layers": 256,
          "n_enc_layers": 256, "n_dec_layers": 256, "s1_bits": 16, "s2_bits": 16,
          "group_size": 16}
# The space a tokenizer reads values in (kronos_sk.data.normalize): the released models'
# "none", or "log" (log prices, log1p volume and amount).
VALUE_TRANSFORMS = ("none", "log")


class _ConfigBase:
    @classmethod
    def from_dict(cls: type[ConfigT], values: dict[str, Any], *, source: str = "config") -> ConfigT:
        """Build a config from a `config.json` dict, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {unknown} for {cls.__name__}; "
                f"expected a subset of {sorted(known)}"
            )
        config = cls(**values)
        config.validate(source)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, source: str = "config") -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = {"bool": (bool,), "int": (int,), "str": (str,)}.get(field.type,
                                                                           (int, float))
            if isinstance(value, bool) and field.type != "bool" or not isinstance(value, expected):
                raise ValueError(
                    f"{source}: key '{field.name}' must be {field.type}, got {value!r}")
            if field.name.endswith("_p") and not 0.0 <= value < 1.0:
                raise ValueError(f"{source}: key '{field.name}' must be in [0, 1), got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"{source}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        for name in ("d_model", "n_heads", "ff_dim", "s1_bits", "s2_bits"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"{source}: key '{name}' must be positive, got {getattr(self, name)}")
        for name, limit in LIMITS.items():
            if getattr(self, name, 0) > limit:
                raise ValueError(f"{source}: key '{name}' = {getattr(self, name)} exceeds "
                                 f"{limit}, the largest size a Kronos config may name")


@dataclass
class TokenizerConfig(_ConfigBase):
    """Kronos tokenizer: a Transformer autoencoder with a Binary Spherical Quantizer.

    Defaults are those of the released Kronos-Tokenizer-base.
    """

    d_in: int = 6
    d_model: int = 256
    n_heads: int = 4
    ff_dim: int = 512
    # The released code builds one block fewer than these say (kept for checkpoint parity).
    n_enc_layers: int = 4
    n_dec_layers: int = 4
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    s1_bits: int = 10
    s2_bits: int = 10
    beta: float = 0.05
    gamma0: float = 1.0
    gamma: float = 1.1
    zeta: float = 0.05
    group_size: int = 4
    # Not a key of the released configs, which are "none"; written only when it is not.
    value_transform: str = "none"

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        if values["value_transform"] == "none":
            del values["value_transform"]
        return values

    def validate(self, source: str = "config") -> None:
        super().validate(source)
        if self.value_transform not in VALUE_TRANSFORMS:
            raise ValueError(f"{source}: key 'value_transform' must be one of "
                             f"{list(VALUE_TRANSFORMS)}, got {self.value_transform!r}")
        if self.n_enc_layers < 1 or self.n_dec_layers < 1:
            raise ValueError(f"{source}: n_enc_layers and n_dec_layers must be at least 1")
        n_bits = self.s1_bits + self.s2_bits
        if self.group_size <= 0 or n_bits % self.group_size:
            raise ValueError(
                f"{source}: group_size={self.group_size} must divide s1_bits + s2_bits = {n_bits}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"{source}: rotary embedding needs an even head dimension")


@dataclass
class PredictorConfig(_ConfigBase):
    """Kronos predictor: a decoder-only Transformer over hierarchical tokens.

    Defaults are those of the released Kronos-small.
    """

    s1_bits: int = 10
    s2_bits: int = 10
    n_layers: int = 8
    d_model: int = 512
    n_heads: int = 8
    ff_dim: int = 1024
    ffn_dropout_p: float = 0.25
    attn_dropout_p: float = 0.1
    resid_dropout_p: float = 0.25
    token_dropout_p: float = 0.1
    learn_te: bool = True

    def validate(self, source: str = "config") -> None:
        super().validate(source)
        if self.n_layers < 1:
            raise ValueError(f"{source}: n_layers must be at least 1")
        if self.d_model % 4 or (self.d_model // 4) % 2:
            # The dependency layer always has 4 heads (released quirk), each needing an even size.
            raise ValueError(f"{source}: d_model={self.d_model} must be a multiple of 8")
        if (self.d_model // self.n_heads) % 2 or self.d_model % 2:
            raise ValueError(f"{source}: rotary embedding needs an even head dimension")


# The one small from-scratch network pair of the estimators (``fit_strategy="from-scratch"``
# in `KronosForecaster` and `KLineTokenizer`): small enough to train on a CPU in seconds, yet
# 6 + 6 bits give the predictor 64 coarse levels to tell moves apart. A user dict overrides
# single fields. ``n_enc_layers = n_dec_layers = 2`` builds one block each (released quirk).
SMALL_TOKENIZER: dict[str, int] = {"d_model": 32, "n_heads": 2, "ff_dim": 64,
                                   "n_enc_layers": 2, "n_dec_layers": 2, "s1_bits": 6,
                                   "s2_bits": 6, "group_size": 4}
SMALL_PREDICTOR: dict[str, int] = {"d_model": 64, "n_heads": 4, "ff_dim": 128, "n_layers": 2}


def small_tokenizer_config(overrides: dict[str, Any] | None = None, *,
                           source: str = "tokenizer_config") -> TokenizerConfig:
    """`SMALL_TOKENIZER` with `overrides` applied, validated (errors name `source`)."""
    return TokenizerConfig.from_dict({**SMALL_TOKENIZER, **(overrides or {})}, source=source)


def small_predictor_config(tokenizer: TokenizerConfig, overrides: dict[str, Any] | None = None,
                           *, source: str = "model_config") -> PredictorConfig:
    """`SMALL_PREDICTOR` over the vocabulary of `tokenizer`, with `overrides` applied."""
    values = {**SMALL_PREDICTOR, "s1_bits": tokenizer.s1_bits, "s2_bits": tokenizer.s2_bits,
              **(overrides or {})}
    return PredictorConfig.from_dict(values, source=source)
