"""Worlds whose entities can grow: a window of next best action or location scoring that asks
for more rows than the world has customers (sites) reaches new ones, so a large scoring batch
keeps one row per customer (site), as the quality stage's grain rule requires. Windows of at
most that many rows are as they were; new entities are the same in every window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recipes import baselines
from runs.data import quality_errors
from runs.families import get_family, worlds
from runs.families import location_scoring as ls
from runs.families import next_best_action as nba

FAMILIES = {"next_best_action": "customer_id", "location_scoring": "site_id"}
TRAIN_ROWS = 300


def continuation(name: str, rows: int, seed: int = 4, **request) -> tuple[dict, pd.DataFrame]:
    family = get_family(name)
    train = worlds.resolve(family, {"rows": TRAIN_ROWS, "seed": seed})
    batch = worlds.resolve(family, {"rows": rows, **request}, after=train)
    return batch, worlds.generate(family, batch)


def number(ids: pd.Series) -> np.ndarray:
    return ids.str.extract(r"(\d+)$")[0].astype(int).to_numpy()


@pytest.mark.parametrize("name", FAMILIES)
def test_a_window_larger_than_the_world_reaches_new_entities_once_each(name):
    grain = FAMILIES[name]
    batch, frame = continuation(name, 4 * TRAIN_ROWS)
    world_size = next(iter(batch["world"].values()))
    assert world_size == TRAIN_ROWS  # the recorded world is unchanged
    assert len(frame) == 4 * TRAIN_ROWS and frame[grain].is_unique
    ids = number(frame[grain])
    assert ids.min() == 1 and ids.max() == 4 * TRAIN_ROWS  # the world's entities, then new ones
    assert (ids > TRAIN_ROWS).sum() == 3 * TRAIN_ROWS
    # the quality stage (the grain rule of the baseline) accepts it as a score run's batch
    manifest = baselines.manifest(name)
    assert quality_errors(frame, manifest, name, check_history=False, outcomes=False) == []
    # ... and still refuses a batch that repeats an entity
    repeated = pd.concat([frame, frame.head(2)], ignore_index=True)
    problems = quality_errors(repeated, manifest, name, check_history=False, outcomes=False)
    assert any("2 duplicate rows on the grain" in p for p in problems)


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_and_window_give_the_same_rows(name):
    first = continuation(name, 5 * TRAIN_ROWS)
    second = continuation(name, 5 * TRAIN_ROWS)
    assert first[0] == second[0]
    pd.testing.assert_frame_equal(first[1], second[1])
    other_seed = continuation(name, 5 * TRAIN_ROWS, seed=5)[1]
    assert not other_seed.drop(columns=[FAMILIES[name]]).equals(first[1].drop(columns=[FAMILIES[name]]))


ATTRIBUTES = {
    "next_best_action": ["segment", "channel", "tenure_months", "monetary"],
    "location_scoring": ["region", "store_format", "population_3km", "median_income", "parking_spaces"],
}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_new_entity_is_the_same_in_every_window(name):
    grain = FAMILIES[name]
    _, early = continuation(name, 3 * TRAIN_ROWS)
    _, late = continuation(name, 6 * TRAIN_ROWS, start="2040-01-01")
    common = early.merge(late, on=grain, suffixes=("_a", "_b"))
    new = number(common[grain]) > TRAIN_ROWS
    assert new.sum() >= TRAIN_ROWS  # the new entities both windows hold
    for column in ATTRIBUTES[name]:
        assert (common[f"{column}_a"] == common[f"{column}_b"]).all(), column


def test_new_entities_come_from_the_worlds_distributions():
    """So a model that scores a large batch of new customers (sites) sees data like its
    training data (no drift from the growth alone)."""
    n = 2 * nba._NEW_CUSTOMER_BLOCK + 10  # more than one block
    segment, channel, tenure, monetary = nba._new_customers(11, n)
    base_segment, _, base_tenure, _ = nba._customers(np.random.default_rng([11, 0]), n)
    assert len(segment) == len(tenure) == len(monetary) == n
    for value, share in zip(nba._SEGMENTS, nba._SEGMENT_P, strict=True):
        assert np.mean(segment == value) == pytest.approx(share, abs=0.01)
    assert np.mean(tenure) == pytest.approx(np.mean(base_tenure), rel=0.02)
    assert set(channel) == set(nba._CHANNELS)
    # the first customers of a longer draw are the customers of a shorter one
    assert np.array_equal(nba._new_customers(11, 100)[3], monetary[:100])
    region, *_ = ls._new_sites(11, n)
    for value, share in zip(ls.REGIONS, ls.REGION_PROBS, strict=True):
        assert np.mean(region == value) == pytest.approx(share, abs=0.01)
    assert np.array_equal(ls._new_sites(11, 50)[2], ls._new_sites(11, n)[2][:50])


# Values of a window of at most the world's size, as the worlds generated them before they
# could grow: such windows are unchanged.
PINNED = {
    "next_best_action": [
        {"customer_id": "C0000015", "tenure_months": 28, "monetary": 202.07, "revenue": 236.8},
        {"customer_id": "C0000010", "tenure_months": 18, "monetary": 62.97, "revenue": 37.6},
    ],
    "location_scoring": [
        {"site_id": "site_0000005", "population_3km": 57183.0, "annual_sales": 722837.92},
        {"site_id": "site_0000004", "population_3km": 107634.0, "annual_sales": 1189615.99},
    ],
}


@pytest.mark.parametrize("name", FAMILIES)
def test_windows_within_the_world_are_unchanged(name):
    family = get_family(name)
    batch = worlds.resolve(family, {"rows": 25}, after=worlds.resolve(family, {"rows": 30, "seed": 9}))
    frame = worlds.generate(family, batch)
    assert number(frame[FAMILIES[name]]).max() <= 30
    for row, expected in zip(frame.head(2).to_dict("records"), PINNED[name], strict=True):
        assert {k: row[k] for k in expected} == pytest.approx(expected)
