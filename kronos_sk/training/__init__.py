"""Training engine for the Kronos tokenizer and predictor (torch only).

`run_training(config, source, validation)` trains from a stateless batch source and returns
the best checkpoint directory; `train_modules(config, source, module=..., tokenizer=...)`
trains in memory and returns the module and its records (the loss history); `Trainer`
exposes the same run as setup / train / save_checkpoint / cleanup. Settings live in
`TrainConfig` (see `load_train_config` for TOML).
"""

from kronos_sk.training.config import TrainConfig, load_train_config
from kronos_sk.training.engine import Trainer, run_training, train_modules
from kronos_sk.training.losses import predictor_loss, tokenizer_loss

__all__ = ["TrainConfig", "Trainer", "load_train_config", "predictor_loss", "run_training",
           "tokenizer_loss", "train_modules"]
