"""A resident process's copy of the plan items (persona_sync.item_cache): after any mix of
changes, commits, rollbacks and other processes' runs, it is what the snapshot holds; and
a cycle that changed a few rows reads only theirs."""

from __future__ import annotations

import marshal
import random
from pathlib import Path

import pytest

from persona_sync.item_cache import ItemCache
from persona_sync.snapshot import PlanItem, Row, Snapshot


def _item(key: str, scenario: str, persona: str, kind: int = 0) -> PlanItem:
    # the sort column is the DN case-folded: keys differing only in case sort together
    text = f'{{"employee":"{key}","new":"{persona}"}}'
    fields = marshal.dumps({"attribute": "personaName", "new": persona})
    return (kind, key.casefold(), scenario, f"(empty) -> {persona}", text, fields)


def _items_of(rng: random.Random, key: str) -> list[PlanItem] | None:
    shape = rng.randrange(4)
    if shape == 0:
        return None
    persona = rng.choice(["vip", "field-sales", "engineer"])
    items = [_item(key, "persona", persona)]
    if shape >= 2:
        items.append(_item(key, "support", persona))
    if shape == 3:
        items.append(_item(key, "persona", "tag", kind=1))  # a foreign value
    return items


def _seed(state: Path, keys: list[str], rng: random.Random) -> None:
    store, _ = Snapshot.open(state)
    with store:
        store.begin()
        store.put(Row(key, key, f"cn={key}", {"title": "t"}) for key in keys)
        store.set_decisions(("p", 1, _items_of(rng, key), key) for key in keys)
        store.commit()


def _seed_one_each(state: Path, keys: list[str], seed: int) -> None:
    """``_seed``, then one item each: a change to vip (which a write of vip settles)."""
    _seed(state, keys, random.Random(seed))
    store, _ = Snapshot.open(state)
    with store:
        store.begin()
        store.set_decisions(("p", 1, [_item(k, "persona", "vip")], k) for k in keys)
        store.commit()


def reads_of_items(monkeypatch: pytest.MonkeyPatch) -> list[set[int] | None]:
    """The rows each later read of plan items asks for (None: every row), in order."""
    asked: list[set[int] | None] = []
    real = Snapshot.keyed_items

    def counted(self: Snapshot, rows: set[int] | None = None) -> object:
        asked.append(None if rows is None else set(rows))
        return real(self, rows)

    monkeypatch.setattr(Snapshot, "keyed_items", counted)
    return asked


def _as_read(store: Snapshot) -> list[tuple[int, str, str | None, bytes, bytes | None]]:
    return store.plan_items()


@pytest.mark.parametrize("seed", range(6))
def test_the_copy_is_the_snapshots_after_any_mix_of_cycles(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"k{n:03d}" for n in range(60)] + ["K000"]  # one sorts with k000
    _seed(tmp_path, keys, rng)
    cache = ItemCache(reread_share=0)  # never read everything for the number of rows alone
    for _cycle in range(40):
        store, _ = Snapshot.open(tmp_path)
        with store:
            store.begin()
            for _step in range(rng.randrange(1, 4)):
                what = rng.randrange(5)
                chosen = rng.sample(keys, rng.randrange(1, 6))
                if what <= 1:  # re-evaluated
                    store.set_decisions(("p", 1, _items_of(rng, k), k) for k in chosen)
                elif what == 2:  # removed, and later added again
                    store.remove(chosen)
                    store.put(Row(k, k, f"cn={k}", {"title": "t"}) for k in chosen[:1])
                    store.set_decisions(("p", 1, _items_of(rng, k), k) for k in chosen[:1])
                elif what == 3:  # written: the planned change settles
                    found = [k for k in chosen if store.row(k) is not None]
                    store.record_written(
                        [(k, "personaname", "vip", "run") for k in found],
                        [(k, "personaname", "vip") for k in found],
                    )
                else:  # a full read's load replaces every row
                    store.start_load()
                    store.clear_rows()
                    store.load((k, k, f"cn={k}", None, marshal.dumps({})) for k in keys)
                    store.end_load()
                    store.set_decisions(("p", 1, _items_of(rng, k), k) for k in keys)
                if rng.random() < 0.3:  # a copy taken in the middle of a transaction
                    assert cache.items(store) == _as_read(store)
            assert cache.items(store) == _as_read(store)
            if rng.random() < 0.2:
                store.rollback()
            else:
                store.commit()
        if rng.random() < 0.2:  # another process's run in between
            other, _ = Snapshot.open(tmp_path)
            with other:
                other.begin()
                key = rng.choice(keys)
                other.set_decisions([("p", 1, _items_of(rng, key), key)])
                other.commit()


def test_a_cycle_reads_only_the_items_of_the_rows_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"k{n}" for n in range(10)]
    _seed_one_each(tmp_path, keys, seed=1)
    asked = reads_of_items(monkeypatch)
    cache = ItemCache(reread_share=2)  # up to 5 rows changed of the 10 items: read apart

    def cycle(change: list[str]) -> None:
        store, _ = Snapshot.open(tmp_path)
        with store:
            store.begin()
            store.set_decisions(("p", 1, [_item(k, "persona", "vip")], k) for k in change)
            assert cache.items(store) == store.plan_items()
            store.commit()

    cycle([])  # the first cycle reads every item
    cycle(["k3", "k7"])
    cycle([])  # nothing changed: nothing read
    assert asked == [None, {4, 8}]
    # another run in between: its items may be anywhere, so every item is read again
    other, _ = Snapshot.open(tmp_path)
    with other:
        other.begin()
        other.set_decisions([("p", 1, None, "k1")])
        other.commit()
    cycle(["k2"])
    assert asked[-1] is None
    cycle([f"k{n}" for n in range(6)])  # more rows than items / reread_share: every item
    assert asked[-1] is None


def test_a_copy_taken_again_after_the_cycles_writes_is_current_for_the_next_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"k{n}" for n in range(10)]
    _seed_one_each(tmp_path, keys, seed=3)
    asked = reads_of_items(monkeypatch)
    cache = ItemCache(reread_share=1)
    for written in (["k2"], ["k5", "k6"], []):
        store, _ = Snapshot.open(tmp_path)
        with store:
            store.begin()
            store.set_decisions([("p", 1, [_item("k1", "persona", "engineer")], "k1")])
            assert cache.items(store) == store.plan_items()  # the plan's
            store.record_written(  # what a sync wrote: its changes settle
                [(k, "personaname", "vip", "run") for k in written],
                [(k, "personaname", "vip") for k in written],
            )
            assert cache.items(store) == store.plan_items()  # taken again before the commit
            store.commit()
    # the first read is of every item; after it only the rows each cycle touched: the
    # plan's (k1, rowid 2) and the writes' (k2: 3; k5, k6: 6, 7); none is read again
    assert asked == [None, {2, 3}, {2}, {2, 6, 7}, {2}, {2}]


def test_a_cycle_rolled_back_makes_the_next_read_every_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(tmp_path, ["a", "b"], random.Random(2))
    cache = ItemCache()
    store, _ = Snapshot.open(tmp_path)
    with store:
        store.begin()
        store.set_decisions([("p", 1, [_item("a", "persona", "vip")], "a")])
        cache.items(store)
        store.rollback()
    store, _ = Snapshot.open(tmp_path)
    with store:
        store.begin()
        assert cache.items(store) == store.plan_items()
        assert store.items_token() is not None
