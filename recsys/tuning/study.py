"""One Optuna study per model: TPE (seeded), pruning on per-epoch validation, SQLite storage.

``tune_model`` runs (or resumes) the study ``<study_name>.<model>`` in ``storage``:

- The study's first trial replays the starting settings (params.yaml / ``--params``, else the
  model's defaults; the space is widened to hold them, ``space.widen``), so the best is never
  below them on validation.
- ``trials`` is the study's total of finished (complete or pruned) trials: a resumed study
  runs only what is missing, never a finished trial again; a failed trial does not count.
  A trial left ``RUNNING`` by a killed process is marked ``FAIL`` (``interrupted``) first;
  the sampler is seeded with ``seed + trials so far``, so a resumed run does not replay the
  random start of the first.
- ``timeout_s`` bounds this run's wall seconds: no trial starts after it, and a Keras trial
  still running when it passes stops at its next validation (``PRUNED``, note ``budget``).
  The first trial (the starting settings) is never stopped, by the budget or the pruner: it
  is the reference the others must beat, so a budget shorter than one fit still yields it.
- Each trial fits on the validation files' training rows and is worth the protocol's metric on
  their held-out rows (``recsys.benchmark.tuning.validation_evaluator``: never the test file).
  Keras models also validate on those rows every epoch; each value goes to the pruner
  (``recsys.training.watch``), a pruned fit stops at once, and a finished one hands on its
  best epoch as ``epochs`` (the benchmark and the pipeline refit without the held-out rows).
  Models without epochs report their one value.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from recsys.benchmark.config import LOO_KS, TUNE_METRIC
from recsys.benchmark.splits import SplitData
from recsys.benchmark.tuning import validation_evaluator
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.evaluation.harness import ProtocolName
from recsys.models.base import Recommender
from recsys.models.model_config import kept_epochs
from recsys.tuning import space as sp
from recsys.tuning.report import ModelStudy, TrialRow, jsonable

if TYPE_CHECKING:
    import optuna

__all__ = ["PRUNERS", "PrunerName", "TuneSettings", "open_study", "tune_model"]

PrunerName = Literal["median", "hyperband", "none"]
PRUNERS: Final = get_args(PrunerName)
BASELINE_NOTE: Final = "starting settings"
STATE_COMPLETE, STATE_PRUNED, STATE_FAIL = "COMPLETE", "PRUNED", "FAIL"


@dataclass(frozen=True)
class TuneSettings:
    """A study's budget and machinery (``recsys tune``'s options, ``params.yaml`` ``tuning``)."""

    trials: int = 20
    """Trials per model in the study, those of earlier (interrupted) runs included."""
    timeout_s: float | None = 300.0
    """Wall seconds per model for this run; None: no limit."""
    pruner: PrunerName = "median"
    seed: int = 0
    study_name: str = "recsys"
    storage: str = "sqlite:///study.db"
    """An Optuna storage URL; ``recsys tune`` defaults to a SQLite file in its output dir."""

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"trials must be a positive integer, got {self.trials!r}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"the timeout must be > 0 seconds, got {self.timeout_s!r}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner '{self.pruner}'", fix=f"use one of {PRUNERS}")
        if not self.study_name.strip():
            raise ConfigError("the study name is empty", fix="pass --study-name NAME")


SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a write waits for another process's (``recsys benchmark --jobs``: the workers
share one SQLite file) before SQLite reports the database locked."""


def open_storage(url: str) -> Any:
    """The Optuna storage of ``url``; a SQLite file waits ``SQLITE_BUSY_TIMEOUT_S`` for the
    other writers. Creates the tables: open it once before starting processes that share it.
    A malformed URL or a missing driver raises Optuna's error (``open_study`` reports it)."""
    import optuna

    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        )
    return url


def open_study(name: str, settings: TuneSettings, n_done: int | None = None) -> optuna.Study:
    """Create or load the study ``name`` in ``settings.storage`` (maximising)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner: optuna.pruners.BasePruner
    if settings.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    elif settings.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    else:
        pruner = optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=settings.seed + (n_done or 0), n_startup_trials=5)
    try:
        return optuna.create_study(
            storage=open_storage(settings.storage),
            sampler=sampler,
            pruner=pruner,
            study_name=name,
            direction="maximize",
            load_if_exists=True,
        )
    except (ValueError, ImportError) as exc:  # a malformed URL, a missing database driver
        raise ConfigError(
            f"cannot open the Optuna storage '{settings.storage}': {exc}",
            fix="pass --storage sqlite:///PATH/study.db (or leave it out)",
        ) from None


def tune_model(
    name: str,
    cls: type[Recommender],
    given: Mapping[str, Any],
    val: SplitData,
    protocol: ProtocolName,
    settings: TuneSettings,
    *,
    log: Any = None,
) -> ModelStudy:
    """Run (or resume) ``name``'s study; the settings it hands on and every trial."""

    metric = TUNE_METRIC[protocol]
    space = sp.search_space_of(cls)
    full = cls(**given).config_dict()  # bad starting settings fail here, before any fit
    if not space:
        return ModelStudy(name, "", metric, dict(given), "params", skipped="no search space")
    sp.check_space(space, full, name)
    space = sp.widen(space, full)
    study_name = f"{settings.study_name}.{name}"
    probe = open_study(study_name, settings)
    _fail_interrupted(probe)
    counted = [t for t in probe.trials if t.state.name in (STATE_COMPLETE, STATE_PRUNED)]
    study = open_study(study_name, settings, n_done=len(probe.trials))
    if not probe.trials:
        study.enqueue_trial(sp.fits(space, full), user_attrs={"note": BASELINE_NOTE})
    remaining = settings.trials - len(counted)  # a failed trial leaves its place open
    start = time.perf_counter()
    if remaining > 0:
        deadline = None if settings.timeout_s is None else time.monotonic() + settings.timeout_s
        objective = _Objective(cls, dict(given), space, val, protocol, metric, deadline)
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=settings.timeout_s,
            catch=(TrialFailed,),
            callbacks=[_logger(name, log)] if log else None,
        )
    seconds = round(time.perf_counter() - start, 3)
    return _model_study(name, study_name, metric, given, space, study.trials, seconds)


class TrialFailed(Exception):
    """A trial's fit failed for a reason of its own settings (a diverged loss): the trial is
    ``FAIL`` with the reason as its note, and the study goes on. Bad data or options
    (``DataError``, ``ConfigError``) stop the study instead."""


class _Objective:
    """One trial: fit on the validation training rows, score the held-out ones."""

    def __init__(
        self,
        cls: type[Recommender],
        given: dict[str, Any],
        space: sp.SearchSpace,
        val: SplitData,
        protocol: ProtocolName,
        metric: str,
        deadline: float | None,
    ) -> None:
        self.cls, self.given, self.space, self.val = cls, given, space, val
        self.metric, self.deadline = metric, deadline
        self.evaluate = validation_evaluator(protocol, val)
        self.ks = LOO_KS if protocol == "loo" else (10,)
        self.data = val.fit_data()
        # The held-out rows as the Keras loop's validation rows: one value per epoch.
        self.monitored_split = dataclasses.replace(self.data.split, val=val.data.split.test)

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        chosen = sp.suggest(trial, self.space)
        model = self.cls(**{**self.given, **chosen})
        config = model.config_dict()
        monitored = "patience" in config and "eval_every" in config  # trains through the loop
        start = time.perf_counter()

        reference = trial.user_attrs.get("note") == BASELINE_NOTE

        def watch(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            if reference:  # the starting settings' value is what the others must beat
                return False
            if self.deadline is not None and time.monotonic() > self.deadline:
                trial.set_user_attr("note", "budget")
                return True
            return trial.should_prune()

        try:
            if monitored:  # a Keras model: recsys.training is imported already
                from recsys.training.watch import RunStopped, watching

                try:
                    with watching(watch):
                        result = model.fit(self.data, self.monitored_split)
                except RunStopped as exc:
                    trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
                    if trial.user_attrs.get("note") != "budget":
                        trial.set_user_attr("note", f"pruned after epoch {exc.epoch}")
                    raise optuna.TrialPruned(str(exc)) from None
            else:
                result = model.fit(self.data)
        except (ConfigError, DataError):
            raise
        except RecsysError as exc:  # e.g. TrainingError: the loss diverged with these settings
            trial.set_user_attr("note", exc.what[:200])
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            raise TrialFailed(exc.what) from exc
        scored = self.evaluate(model, self.val.train, self.val.test, self.ks)
        value = float(scored.metrics[self.metric])
        if monitored and result.best_epoch:
            chosen.update(kept_epochs(config, int(result.best_epoch)))
            trial.set_user_attr("best_epoch", int(result.best_epoch))
        else:
            trial.report(value, 1)  # one value for a model without epochs
        trial.set_user_attr("chosen", jsonable(chosen))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        return value


def _fail_interrupted(study: optuna.Study) -> None:
    """Mark trials an interrupted run left ``RUNNING`` as ``FAIL`` (one process per study)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)


def _logger(name: str, log: Any) -> Any:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        done = [t.value for t in study.trials if t.value is not None]
        best = f"{max(done):.4f}" if done else "-"
        log(f"{name}: trial {trial.number} {trial.state.name} {value} (best {best})")

    return callback


def _model_study(
    name: str,
    study_name: str,
    metric: str,
    given: Mapping[str, Any],
    space: sp.SearchSpace,
    trials: list[optuna.trial.FrozenTrial],
    seconds: float,
) -> ModelStudy:
    rows = tuple(
        TrialRow(
            model=name,
            number=t.number,
            state=t.state.name,
            value=t.value,
            seconds=t.user_attrs.get("seconds"),
            params=sp.decode(space, t.params),
            best_epoch=t.user_attrs.get("best_epoch"),
            note=str(t.user_attrs.get("note", "interrupted" if t.state.name == STATE_FAIL else "")),
        )
        for t in trials
    )
    done = [t for t in trials if t.state.name == STATE_COMPLETE and t.value is not None]
    baseline = next((t.value for t in done if t.user_attrs.get("note") == BASELINE_NOTE), None)
    if not done:
        given_ = dict(given)
        return ModelStudy(name, study_name, metric, given_, "params", None, baseline, rows, seconds)
    best = max(done, key=lambda t: (float(t.value or 0.0), -t.number))  # ties: the earlier
    chosen = sp.decode(space, best.user_attrs.get("chosen", best.params))
    settings = jsonable({**given, **chosen})
    return ModelStudy(
        name, study_name, metric, settings, "tuned", best.value, baseline, rows, seconds
    )
