"""The training loop's settings (from a model's config) and its state (what a checkpoint keeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from recsys.errors import ConfigError


@dataclass(frozen=True)
class TrainSettings:
    """The loop's knobs, taken from a model's config."""

    epochs: int
    batch_size: int
    seed: int
    patience: int = 3
    """Evaluations without improvement before stopping (0: never stop early)."""
    eval_every: int = 1
    """Validate every this many epochs (and after the last)."""
    verbose: int = 0
    """0 silent, 1 progress bar, 2 one line per epoch (``model.fit``'s ``verbose``)."""
    restore_best: bool = True
    shuffle: bool = True
    pipeline: Literal["auto", "tf.data", "pydataset"] = "auto"
    group: int = 1
    """Rows per softmax group (``make_dataset``): a batch is ``batch_size`` groups."""

    def __post_init__(self) -> None:
        lows = (("epochs", 1), ("batch_size", 1), ("patience", 0), ("eval_every", 1), ("group", 1))
        for key, low in lows:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a checkpoint and its resumption."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "patience": self.patience,
            "eval_every": self.eval_every,
            "restore_best": self.restore_best,
            "shuffle": self.shuffle,
            **({"group": self.group} if self.group > 1 else {}),
        }


@dataclass
class LoopState:
    epoch: int = 0
    """Epochs completed."""
    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    done: bool = False
    samples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    elapsed: list[float] = field(default_factory=list)
    """``train_seconds`` after each epoch."""
