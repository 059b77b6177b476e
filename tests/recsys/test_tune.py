"""``recsys tune`` (issue 17, part 3): trials, the results table and the params file, resuming
an interrupted study, the wall-clock budget, pruning a Keras trial, and bad options."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from recsys.benchmark import SplitFiles, load_split
from recsys.cli import main
from recsys.models.baselines import ItemKNN
from recsys.tuning import space as sp
from recsys.tuning.run import tune_models
from recsys.tuning.study import TuneSettings


def _write(rows: list[tuple[int, int]], path: Path) -> Path:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=1.0, timestamp=0)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def val_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """Four user groups, each liking its own block of 10 items (seeded noise), written as the
    validation train/test files and a real train/test pair for ``recsys benchmark``."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("tune")
    rows = {"train": [], "test": [], "val_train": [], "val_test": []}  # type: dict[str, list]
    for user in range(40):
        block = np.arange(10) + 10 * (user % 4)
        liked = rng.permutation(block)[:7]
        rows["test"].append((user, int(liked[0])))
        rows["val_test"].append((user, int(liked[1])))
        rows["val_train"] += [(user, int(i)) for i in liked[2:]]
        rows["train"] += [(user, int(i)) for i in liked[1:]]
    return tuple(_write(r, root / f"{name}.csv") for name, r in rows.items())  # type: ignore[return-value]


def _tune(args: list[str], files: tuple[Path, ...], out: Path) -> int:
    *_, val_train, val_test = files
    return main(["tune", "--val-train", str(val_train), "--val-test", str(val_test),
                 "--out", str(out), *args])  # fmt: skip


def _storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def test_tune_runs_trials_and_writes_table_and_params(val_files, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    assert _tune(["--models", "itemknn", "--trials", "4", "--timeout", "60"], val_files, out) == 0
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 4 and set(table["state"]) == {"COMPLETE"}
    assert table["value"].notna().all() and (table["seconds"] >= 0).all()
    # The first trial replays the starting settings (the model's defaults here).
    assert "starting settings" in table.loc[table["number"] == 0, "note"].item()
    chosen = yaml.safe_load((out / "params.yaml").read_text())["models"]["itemknn"]
    best = table.loc[table["value"].idxmax()]
    assert {k: chosen[k] for k in ("k", "shrink")} == yaml.safe_load(best["params"])
    assert "| itemknn | tuned |" in (out / "trials.md").read_text()


def test_params_file_is_read_by_benchmark(val_files, tmp_path: Path) -> None:
    train, test, *_ = val_files
    tuned, start = tmp_path / "tuned", tmp_path / "start.yaml"
    start.write_text("models: {itemknn: {k: 7}, ease: {l2: 5.0}}\n")
    args = ["--models", "itemknn", "--trials", "3", "--params", str(start)]
    assert _tune(args, val_files, tuned) == 0
    written = yaml.safe_load((tuned / "params.yaml").read_text())["models"]
    assert written["ease"] == {"l2": 5.0}  # a model not tuned keeps its starting settings
    chosen = yaml.safe_load((tuned / "params.yaml").read_text())["models"]["itemknn"]
    bench = tmp_path / "bench"
    files = ["--train", str(train), "--test", str(test), "--params", str(tuned / "params.yaml")]
    assert (
        main(["benchmark", *files, "--models", "itemknn", "--n-boot", "1", "--out", str(bench)])
        == 0
    )
    metrics = yaml.safe_load((bench / "itemknn" / "metrics.json").read_text())
    assert metrics["config_source"] == "params"
    assert metrics["config"]["k"] == chosen["k"]
    assert metrics["config"]["shrink"] == pytest.approx(chosen["shrink"])


def test_benchmark_tunes_with_a_study_per_model_and_hands_members_on(
    val_files, tmp_path: Path
) -> None:
    """`recsys benchmark --tune-trials`: each model with a search space gets its study on the
    validation files (kept in OUT/study.db); an ensemble of tuned models blends them as tuned."""
    train, test, val_train, val_test = val_files
    start = tmp_path / "start.yaml"
    start.write_text("models: {ensemble: {members: [ease, itemknn]}}\n")
    out = tmp_path / "bench"
    files = ["--train", str(train), "--test", str(test), "--val-train", str(val_train),
             "--val-test", str(val_test), "--params", str(start)]  # fmt: skip
    args = ["--models", "itemknn,ease,ensemble", "--tune-trials", "3", "--n-boot", "1"]
    assert main(["benchmark", *files, *args, "--out", str(out)]) == 0
    assert (out / "study.db").is_file()
    knn = yaml.safe_load((out / "itemknn" / "metrics.json").read_text())
    assert knn["config_source"] == "tuned" and knn["tuning"]["method"].startswith("optuna (3")
    assert len(knn["tuning"]["scores"]) == 3
    ensemble = yaml.safe_load((out / "ensemble" / "metrics.json").read_text())
    members = ensemble["config"]["params"]
    assert members["itemknn"]["k"] == knn["config"]["k"]
    assert members["ease"]["l2"] == pytest.approx(
        yaml.safe_load((out / "ease" / "metrics.json").read_text())["config"]["l2"]
    )
    no_val = ["--train", str(train), "--test", str(test), "--tune-trials", "2"]
    assert main(["benchmark", *no_val, "--models", "ease", "--out", str(tmp_path / "x")]) == 2


def test_interrupted_study_resumes_without_repeating_a_trial(
    val_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, val_train, val_test = val_files
    val = load_split(SplitFiles(val_train, val_test), prefix="val-")
    out = tmp_path / "tuned"
    settings = TuneSettings(trials=6, timeout_s=None, storage=_storage(out), seed=3)
    out.mkdir()
    fit = ItemKNN._fit
    calls = {"n": 0}

    def interrupted(self, data, split):  # the fourth fit is killed (Ctrl-C)
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return fit(self, data, split)

    monkeypatch.setattr(ItemKNN, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune_models(["itemknn"], {}, val, "topk", settings, out)
    first = optuna.load_study(study_name="recsys.itemknn", storage=settings.storage).trials
    assert [t.state.name for t in first] == ["COMPLETE"] * 3 + ["FAIL"]
    monkeypatch.setattr(ItemKNN, "_fit", fit)

    report = tune_models(["itemknn"], {}, val, "topk", settings, out)
    trials = report.models["itemknn"].trials
    done = [t for t in trials if t.state == "COMPLETE"]
    assert len(done) == 6
    assert [t.params for t in trials[:3]] == [sp.decode({}, t.params) for t in first[:3]]
    assert len(trials) == 7  # nothing re-run: 3 + the failed one + 3 new
    keys = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(keys)) == len(keys)


def test_wall_clock_budget_stops_the_study(
    val_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, val_train, val_test = val_files
    val = load_split(SplitFiles(val_train, val_test), prefix="val-")
    fit = ItemKNN._fit

    def slow(self, data, split):
        time.sleep(0.3)
        return fit(self, data, split)

    monkeypatch.setattr(ItemKNN, "_fit", slow)
    out = tmp_path / "tuned"
    out.mkdir()
    settings = TuneSettings(trials=100, timeout_s=1.0, storage=_storage(out))
    start = time.perf_counter()
    report = tune_models(["itemknn"], {}, val, "topk", settings, out)
    assert time.perf_counter() - start < 5
    assert 1 <= len(report.models["itemknn"].trials) <= 5
    assert report.models["itemknn"].source == "tuned"


def test_pruning_stops_a_keras_trial_early(
    val_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pruner's verdict reaches the loop: a pruned NeuMF trial stops after its first
    validated epoch (the median pruner answers 'prune' for every trial but the first)."""
    from recsys.models.ncf import NeuMF

    _, _, val_train, val_test = val_files
    val = load_split(SplitFiles(val_train, val_test), prefix="val-")
    monkeypatch.setattr(
        optuna.pruners.MedianPruner, "prune", lambda self, study, trial: trial.number > 0
    )
    monkeypatch.setattr(NeuMF, "search_space", {"learning_rate": sp.Float(1e-3, 1e-2, log=True)})
    out = tmp_path / "tuned"
    out.mkdir()
    given = {"neumf": {"epochs": 4, "patience": 0, "embedding_dim": 4, "mlp_units": [8, 4],
                       "batch_size": 64, "device": "cpu"}}  # fmt: skip
    settings = TuneSettings(trials=2, timeout_s=None, storage=_storage(out))
    report = tune_models(["neumf"], given, val, "topk", settings, out)
    first, second = report.models["neumf"].trials
    assert first.state == "COMPLETE" and first.best_epoch is not None
    assert second.state == "PRUNED" and second.note == "pruned after epoch 1"
    study = optuna.load_study(study_name="recsys.neumf", storage=settings.storage)
    assert list(study.trials[1].intermediate_values) == [1]  # stopped: no epoch 2 reported
    assert len(study.trials[0].intermediate_values) == 4
    assert report.models["neumf"].settings["epochs"] == first.best_epoch


def test_a_keras_study_over_layer_widths_writes_its_chosen_widths(
    val_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Keras trial stores what it chose (with its best epoch) as JSON, where a tuple of
    layer widths becomes a list: the study's choice reads back as the widths (it crashed
    the u1 Mult-DAE study with "unhashable type: 'list'" before)."""
    from recsys.models.multdae import MultDAE

    _, _, val_train, val_test = val_files
    val = load_split(SplitFiles(val_train, val_test), prefix="val-")
    space = {"hidden_units": sp.Choice(((8,), (16, 8)))}
    monkeypatch.setattr(MultDAE, "search_space", space)
    out = tmp_path / "tuned"
    out.mkdir()
    given = {"multdae": {"epochs": 2, "eval_every": 1, "hidden_units": [8], "device": "cpu"}}
    settings = TuneSettings(trials=3, timeout_s=None, storage=_storage(out), pruner="none")
    report = tune_models(["multdae"], given, val, "topk", settings, out)
    study = report.models["multdae"]
    assert study.source == "tuned" and len(study.trials) == 3
    widths = yaml.safe_load((out / "params.yaml").read_text())["models"]["multdae"]
    assert widths["hidden_units"] in ([8], [16, 8])
    best = max((t for t in study.trials if t.value is not None), key=lambda t: t.value or 0.0)
    assert tuple(widths["hidden_units"]) == best.params["hidden_units"]
    assert MultDAE(**widths).config.hidden_units == tuple(widths["hidden_units"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "trials must be a positive integer"),
        (["--timeout", "0"], "timeout must be > 0"),
        (["--models", "nosuch"], "unknown model 'nosuch'"),
        (["--in", "data/processed"], "--in tunes on the processed split"),
        (["--protocol", "loo"], "needs the validation negatives"),
    ],
)
def test_bad_options_are_clear_errors(
    val_files, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert _tune(["--models", "itemknn", *args], val_files, tmp_path / "out") == 2
    assert message in capsys.readouterr().err


def test_missing_validation_files_and_foreign_out(
    val_files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", "--val-train", str(val_files[2]), "--out", str(tmp_path / "o")]) == 2
    assert "needs --val-train and --val-test" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert _tune(["--models", "itemknn"], val_files, foreign) == 2
    assert "is not a tuning output" in capsys.readouterr().err
    assert (foreign / "keep.txt").read_text() == "mine"


def test_space_is_widened_to_hold_the_starting_settings() -> None:
    space = {"l2": sp.Float(1.0, 10.0, log=True), "units": sp.Choice(((8, 4),))}
    wide = sp.widen(space, {"l2": 500.0, "units": [16, 8]})
    assert wide["l2"] == sp.Float(1.0, 500.0, log=True)
    assert sp.fits(wide, {"l2": 500.0, "units": [16, 8]}) == {"l2": 500.0, "units": "16-8"}
    assert sp.decode(wide, {"units": "16-8"}) == {"units": (16, 8)}


def test_a_model_the_data_cannot_train_keeps_its_settings_with_the_reason(
    val_files, tmp_path: Path
) -> None:
    """No item table: the content model is not tuned on nothing; the report says why."""
    _, _, val_train, val_test = val_files
    val = load_split(SplitFiles(val_train, val_test), prefix="val-")
    out = tmp_path / "tuned"
    out.mkdir()
    settings = TuneSettings(trials=2, timeout_s=None, storage=_storage(out))
    report = tune_models(
        ["mostpop", "content"], {"content": {"epochs": 1}}, val, "topk", settings, out
    )
    study = report.models["content"]
    assert study.source == "params" and "item content" in str(study.skipped)
    assert study.settings == {"epochs": 1}
    assert yaml.safe_load((out / "params.yaml").read_text())["models"]["content"] == {"epochs": 1}


def test_kept_epochs_keep_the_cosine_schedule_of_the_run_they_came_from() -> None:
    from recsys.models.model_config import kept_epochs

    cosine = {"lr_schedule": "cosine", "epochs": 18, "schedule_epochs": 0}
    assert kept_epochs(cosine, 9) == {"epochs": 9, "schedule_epochs": 18}
    assert kept_epochs(cosine, 18) == {"epochs": 18}
    assert kept_epochs({**cosine, "schedule_epochs": 30}, 9) == {"epochs": 9, "schedule_epochs": 30}
    assert kept_epochs({"lr_schedule": "constant", "epochs": 18}, 9) == {"epochs": 9}
    assert kept_epochs({"epochs": 18}, 9) == {"epochs": 9}  # a model without schedules


def test_a_refit_of_kept_epochs_follows_the_long_runs_learning_rates() -> None:
    """Nine epochs kept from an 18-epoch cosine run train at that run's rates (half the
    initial rate at the end of epoch 9), not over a cosine compressed into nine epochs."""
    from recsys.errors import ConfigError
    from recsys.models.ncf import NeuMF

    steps = 10

    def rate_after_epochs(model: NeuMF, epochs: int) -> float:
        optimizer = model._optimizer(steps)  # what the training loop uses
        optimizer.iterations.assign(epochs * steps)
        return float(optimizer.learning_rate)

    kept = NeuMF(epochs=9, schedule_epochs=18, lr_schedule="cosine", learning_rate=0.01)
    compressed = NeuMF(epochs=9, lr_schedule="cosine", learning_rate=0.01)
    assert rate_after_epochs(kept, 0) == pytest.approx(0.01)
    assert rate_after_epochs(kept, 9) == pytest.approx(0.005, rel=1e-4)
    assert rate_after_epochs(compressed, 9) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ConfigError, match="schedule_epochs must be >= 0"):
        NeuMF(epochs=9, schedule_epochs=-1, lr_schedule="cosine")._optimizer(steps)
