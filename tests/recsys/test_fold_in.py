"""Issue 19 §1 (a first part): new users folded into a trained model without refitting it.
Where the model's maths gives the exact answer, the folded-in user gets it: EASE and ItemKNN
score a new user exactly as a known user with the same history; weighted ALS gives the new
user the closed-form ALS user step against the trained item factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataError
from recsys.models.als import ALS, confidence_matrix
from recsys.models.baselines import EASE, ItemKNN
from recsys.models.bpr import BPRMF
from recsys.models.fold_in import fold_in
from tests.recsys.test_models_contract import synthetic_data


def history_of(model: object, user: int) -> pd.DataFrame:
    items = model.seen_items(user)  # type: ignore[attr-defined]
    return pd.DataFrame({"user_id": user, "item_id": items, "rating": 4.0})


def new_id(model: object) -> int:
    return int(model.vocab.user_ids.max()) + 1000  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", [EASE(l2=50.0), ItemKNN(k=20)], ids=["ease", "itemknn"])
def test_a_new_user_is_scored_as_a_known_user_with_the_same_history(model: object) -> None:
    data = synthetic_data()
    model.fit(data)  # type: ignore[attr-defined]
    twin = int(data.vocab.user_ids[3])
    expected = model.recommend(twin, k=10)  # type: ignore[attr-defined]
    before = model.vocab.user_ids.copy()  # type: ignore[attr-defined]
    newcomer = new_id(model)
    batch = history_of(model, twin).assign(user_id=newcomer)
    report = fold_in(model, batch)  # type: ignore[arg-type]
    assert (report.new_users, report.known_users, report.interactions) == (1, 0, len(batch))
    assert model.known_users([newcomer]).all()  # type: ignore[attr-defined]
    got = model.recommend(newcomer, k=10)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)
    # every earlier user keeps their answers
    after = model.recommend(twin, k=10)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(after[0], expected[0])
    assert set(before) < set(model.vocab.user_ids)  # type: ignore[attr-defined]


def test_an_als_newcomer_gets_the_closed_form_user_step(tmp_path: Path) -> None:
    data = synthetic_data()
    model = ALS(factors=8, regularization=5.0, alpha=2.0, iterations=5, confidence="log")
    model.fit(data)
    twin = int(data.vocab.user_ids[5])
    newcomer = new_id(model)
    batch = history_of(model, twin).assign(user_id=newcomer)
    batch["rating"] = np.where(np.arange(len(batch)) % 2, 5.0, 1.0)  # unequal confidences
    fold_in(model, batch)
    y = model.item_factors
    assert y is not None and model.user_factors is not None
    row = int(model.vocab.encode_users([newcomer])[0])  # type: ignore[union-attr]
    # the maths, in numpy: (Y^T C_u Y + lambda I) x = Y^T C_u p_u over the user's items
    idx = model.vocab.encode_items(batch["item_id"].to_numpy())  # type: ignore[union-attr]
    c = confidence_matrix(
        sp.csr_matrix((batch["rating"].to_numpy(np.float32), ([0] * len(idx), idx)),
                      shape=(1, y.shape[0])),
        model.config,
    ).toarray()[0]  # fmt: skip
    observed = c > 0
    lam = model.config.regularization * np.eye(8)
    a = y.T @ y + (y[observed].T * (c[observed] - 1.0)) @ y[observed] + lam
    b = c[observed] @ y[observed]
    np.testing.assert_allclose(model.user_factors[row], np.linalg.solve(a, b), rtol=2e-3, atol=1e-4)
    assert not np.array_equal(model.user_factors[row], np.zeros(8)), "scored as a cold user"
    # the grown model saves and loads as any other
    model.save(tmp_path / "als")
    again = ALS.load(tmp_path / "als")
    np.testing.assert_array_equal(
        again.recommend(newcomer, k=5)[0], model.recommend(newcomer, 5)[0]
    )


def test_new_items_and_unsupported_models_are_refused_with_the_reason() -> None:
    data = synthetic_data()
    model = EASE(l2=50.0)
    model.fit(data)
    unknown_item = int(data.vocab.item_ids.max()) + 1
    seen_before = model._seen_matrix().copy()
    with pytest.raises(DataError, match="never seen") as caught:
        fold_in(model, pd.DataFrame({"user_id": [10**6], "item_id": [unknown_item]}))
    assert "retrain" in (caught.value.fix or "")
    assert (model._seen_matrix() != seen_before).nnz == 0, "a refused batch changed the model"
    with pytest.raises(DataError, match="str ids"):
        fold_in(model, pd.DataFrame({"user_id": ["u-1"], "item_id": [data.vocab.item_ids[0]]}))
    bpr = BPRMF(factors=4, epochs=1)
    bpr.fit(data)
    with pytest.raises(ConfigError, match="cannot take new users"):
        fold_in(bpr, pd.DataFrame({"user_id": [10**6], "item_id": [data.vocab.item_ids[0]]}))
