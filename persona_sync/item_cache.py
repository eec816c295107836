"""A resident process's copy of the snapshot's plan items, brought up to date each cycle.

A plan is assembled from every row's plan items (:meth:`Snapshot.plan_items`): at 10,000
changes that read is about 0.03 s, a quarter of a resident delta cycle (``plan --delta
--every``) that re-evaluated 100 employees. The copy is taken once; each later cycle reads
only the items of the rows its transaction changed and puts them in their places.

The copy is the snapshot's only while nothing else changed the items since it was taken:
every commit that changes them saves a new token in the snapshot (:meth:`Snapshot.items_token`;
another process's run too), and the copy is used again only when the snapshot's saved token
is the one the copy was labelled with, or when the copy was taken earlier in the same
transaction (a sync's cycle takes it for the plan, then records its writes and takes it
again before the commit, so that the next cycle finds it current). Otherwise (another run
in between, a cycle rolled back, a full read, more rows changed than :data:`REREAD_SHARE`
allows), every item is read again.
"""

from __future__ import annotations

import bisect

from persona_sync.snapshot import KeyedItem, Snapshot

#: Read every item again when the rows changed are more than 1/REREAD_SHARE of the items:
#: putting an item in its place moves the lists (about 37 us at 100,000 items), reading
#: one costs about 0.9 us.
REREAD_SHARE = 40
KEEP_MAX = 250_000  # items above which no copy is kept (it would double the memory)

#: A plan item as :meth:`Snapshot.plan_items` returns it: (kind, scenario, move, text, fields).
Item = tuple[int, str, str | None, bytes, bytes | None]
_Place = tuple[int, str, str, int, int]  # (kind, sort, scenario, row, item's rowid)


class ItemCache:
    """The plan items of the snapshot as its last cycle left them, in the plan's order."""

    def __init__(self, reread_share: int = REREAD_SHARE) -> None:
        self._reread_share = reread_share
        self._token: str | None = None  # the items_token the copy is of; None: no copy
        self._places: list[_Place] = []  # sorted
        self._items: list[Item] = []  # the item at each place
        self._of_row: dict[int, list[_Place]] = {}  # row -> its items' places

    def items(self, store: Snapshot) -> list[Item]:
        """Every plan item of ``store`` as it is now, in the plan's order (the list is the
        copy's own: read it before the next call)."""
        saved = store.get("items_token")
        current = (saved is not None and saved == self._token) or store.named_here(self._token)
        touched = store.touched_rows() if current else None
        if touched is None or len(touched) * self._reread_share > len(self._items):
            self._fill(store.keyed_items())
        elif touched:
            self._update(touched, store.keyed_items(touched))
        items = self._items
        if len(items) > KEEP_MAX:
            self._clear()
        else:
            self._token = store.items_token()
        return items

    def _clear(self) -> None:
        self._token = None
        self._places, self._items, self._of_row = [], [], {}

    def _fill(self, keyed: list[KeyedItem]) -> None:
        self._places = [item[:5] for item in keyed]
        self._items = [(k[0], k[2], k[5], k[6], k[7]) for k in keyed]
        of_row: dict[int, list[_Place]] = {}
        for place in self._places:
            of_row.setdefault(place[3], []).append(place)
        self._of_row = of_row

    def _update(self, rows: set[int], keyed: list[KeyedItem]) -> None:
        places, items = self._places, self._items
        for row in rows:
            for place in self._of_row.pop(row, ()):
                at = bisect.bisect_left(places, place)
                del places[at]
                del items[at]
        for kind, sort, scenario, row, rowid, move, text, fields in keyed:
            place = (kind, sort, scenario, row, rowid)
            at = bisect.bisect_left(places, place)
            places.insert(at, place)
            items.insert(at, (kind, scenario, move, text, fields))
            self._of_row.setdefault(row, []).append(place)
