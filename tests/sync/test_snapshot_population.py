"""The snapshot's population counts: grouped over an index the first count makes."""

from __future__ import annotations

from persona_sync.snapshot import Row, Snapshot


def test_population_is_grouped_over_its_own_index() -> None:
    store = Snapshot.in_memory()
    store.put(Row(f"k{n}", f"u{n}", f"cn=u{n}", {"title": "x"}) for n in range(5))
    store.set_decisions(
        [("vip", 1, None, "k0"), ("vip", 0, None, "k1"), ("vip", 0, None, "k2")]
        + [(None, 0, None, "k3"), ("clinician", 1, None, "k4")]
    )
    assert sorted(store.population(), key=str) == sorted(
        [("vip", 1, 1), ("vip", 0, 2), (None, 0, 1), ("clinician", 1, 1)], key=str
    )
    indexes = [
        name for (name,) in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    ]
    assert "employees_population" in indexes
    store.start_load()  # a full read loads the rows without the index
    store.clear_rows()
    store.end_load()
    indexes = [
        name for (name,) in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    ]
    assert "employees_population" not in indexes
    assert list(store.population()) == []
