"""Deterministic client order ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sapphire.domain import ClientOrderId, ClientOrderIdGenerator, StrategyId


def test_ids_are_run_strategy_sequence() -> None:
    gen = ClientOrderIdGenerator(StrategyId("sma"), "run7")
    assert gen.last_seq == 0
    first, second = gen.next(), gen.next()
    assert (first, second) == ("run7-sma-1", "run7-sma-2")
    assert type(first) is ClientOrderId
    assert gen.last_seq == 2


@given(seqs=st.integers(min_value=1, max_value=50))
def test_same_run_strategy_and_sequence_give_the_same_id(seqs: int) -> None:
    one = ClientOrderIdGenerator("s", "r")
    two = ClientOrderIdGenerator("s", "r")
    a = [one.next() for _ in range(seqs)]
    b = [two.next() for _ in range(seqs)]
    assert a == b
    assert len(set(a)) == seqs
    assert [one.seq_of(x) for x in a] == list(range(1, seqs + 1))


def test_restore_after_a_crash_continues_the_sequence() -> None:
    before = ClientOrderIdGenerator("s", "r")
    issued = [before.next() for _ in range(5)]
    after = ClientOrderIdGenerator("s", "r")
    after.restore(max(after.seq_of(x) or 0 for x in issued))
    assert after.next() == "r-s-6"
    # A resubmission of order 3 reuses its id.
    assert after.id_for(3) == issued[2]
    assert after.last_seq == 6


def test_other_runs_and_strategies_differ() -> None:
    assert ClientOrderIdGenerator("s", "r1").next() != ClientOrderIdGenerator("s", "r2").next()
    assert ClientOrderIdGenerator("a", "r").next() != ClientOrderIdGenerator("b", "r").next()


def test_seq_of_foreign_ids_is_none() -> None:
    gen = ClientOrderIdGenerator("s", "r")
    assert gen.seq_of("r-t-1") is None
    assert gen.seq_of("r-s-") is None
    assert gen.seq_of("r-s-01") is None
    assert gen.seq_of("r-s-x") is None
    assert gen.seq_of("r-s-12") == 12


@pytest.mark.parametrize("bad", [-1, True, 1.0, "3"])
def test_restore_refuses_bad_sequences(bad: object) -> None:
    with pytest.raises(ValueError, match="last_seq"):
        ClientOrderIdGenerator("s", "r").restore(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -2, True])
def test_id_for_refuses_bad_sequences(bad: object) -> None:
    with pytest.raises(ValueError, match="sequence"):
        ClientOrderIdGenerator("s", "r").id_for(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("run", ["", "a b", None])
def test_bad_run_ids_are_refused(run: object) -> None:
    with pytest.raises(ValueError, match="run_id"):
        ClientOrderIdGenerator("s", run)  # type: ignore[arg-type]


def test_bad_strategy_id_is_refused() -> None:
    with pytest.raises(ValueError, match="StrategyId"):
        ClientOrderIdGenerator("", "r")
