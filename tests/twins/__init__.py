"""In-memory twins of the adapters the application talks to, for unit tests without services.

Each twin keeps the rules its adapter's backend enforces (the store's compare-and-set, gap-free
positions and term rule; the broker's confirms), so a unit test that passes against a twin says
something about the real thing. tests/contract runs one suite against twin and adapter alike.
"""

from shadowline.adapters.store import EventStore
from tests.twins.broker import InMemoryBroker, Published
from tests.twins.store import InMemoryStore

# Either store: what the contract suite and the application's callers may rely on.
Store = EventStore | InMemoryStore

__all__ = ["InMemoryBroker", "InMemoryStore", "Published", "Store"]
