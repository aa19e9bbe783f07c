"""The recorded workload of a chaos run: N client processes writing and reading a few config
items of a running pair over HTTP, every operation recorded in the history (chaos.history).

A process is an asyncio task with one operation at a time. It works a compare-and-set
register per key: it reads the item (on the master, read-your-writes) when it does not know its
version, then writes a value unique to the run (`subaccount_id` names the process and its
count) expecting that version (If-Match: "<v>", or If-None-Match: * to create). Writers follow
the master as the project's client does (client.follow `Instances`: GET /master, and the
`master` a 503 refusal names). A write whose outcome is unknown is recorded `info` and never
sent again: the process forgets the key's version and reads it first next time. A read marked
`any` goes to any instance (a shadow may lag: not linearizable by design), so those are written
to a history of their own, never judged with the others.

`final_stores` reads both instances after the run (GET /events paged, GET /config, the chain
value of the last event) into the checker's `Store`s, the master first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from shadowline.client.follow import Instances
from shadowline.client.plans import arun, not_received, refused_here
from shadowline.client.types import ClientError
from shadowline_bench.chaos.checker import Store
from shadowline_bench.chaos.history import HistoryWriter, Outcome

KIND = "subaccount"
KEYS = ("chaos-0", "chaos-1", "chaos-2")
PAGE = 5000  # events per GET /events page
CONFIG_TYPES = ("ConfigPut", "ConfigDeleted")


def classify(answer: httpx.Response | BaseException, refusals_unknown: bool = False) -> Outcome:
    """What a write's answer (or the transport error raised) says of the write: `ok`; `fail`
    when it certainly was not applied (never sent, a 4xx such as 409, 412 or 422, or a 503
    refusal naming the master, without Retry-After); else `info` (a timeout, a connection lost
    after sending, 500/502/504, a 503 "unavailable" whose write may have been done).

    `refusals_unknown` counts a 503 refusal as `info` too: an instance also answers so for a
    write it has committed but may not acknowledge (the shadow did not confirm it, the lease
    ran out), which the strict reading then reports as applied unacknowledged."""
    if isinstance(answer, BaseException):
        if isinstance(answer, httpx.TransportError) and not_received(answer):
            return "fail"
        return "info"
    status = answer.status_code
    if status in (200, 201):
        return "ok"
    if 400 <= status < 500:
        return "fail"
    if status == 503 and refused_here(answer)[0]:
        return "info" if refusals_unknown else "fail"
    return "info"


def read_result(answer: httpx.Response | BaseException) -> tuple[Outcome, int, Any]:
    """A read's outcome and the (version, value) it saw; an absent item is (0, None)."""
    if isinstance(answer, BaseException):
        return ("fail" if isinstance(answer, httpx.TransportError) and not_received(answer)
                else "info", 0, None)  # fmt: skip
    if answer.status_code == 404:
        return "ok", 0, None
    if answer.status_code != 200:
        return "fail", 0, None
    doc = orjson.loads(answer.content)
    return "ok", int(doc["version"]), doc["value"]


def answer_note(answer: httpx.Response | BaseException) -> dict[str, Any] | None:
    """What a write's answer said, for the run's record of writes that were not ok; None for
    a plain version conflict (a 409 or 412 that names no master)."""
    if isinstance(answer, BaseException):
        return {"status": None, "error": repr(answer)}
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        body = answer.text
    named = isinstance(body, dict) and "master" in body
    if answer.status_code in (409, 412) and not named:
        return None
    said = body.get("error") if isinstance(body, dict) else body
    return {"status": answer.status_code, "retry_after": answer.headers.get("retry-after"),
            "error": said}  # fmt: skip


def guard(expected: int) -> dict[str, str]:
    """The precondition headers of a write expecting `expected` (0: create only)."""
    return {"If-None-Match": "*"} if expected == 0 else {"If-Match": f'"{expected}"'}


def value_of(run: str, process: int, count: int) -> dict[str, Any]:
    """The `count`-th value process `process` writes in run `run`: unique to the run."""
    return {"region": "eu10", "subaccount_id": f"{run}-p{process}-{count}"}


@dataclass
class Workload:
    """The client processes of a run and what they record; `run()` until `stop` is set."""

    urls: Sequence[str]
    names: Mapping[str, str]  # base URL -> instance name, for the history's `instance`
    history: HistoryWriter
    password: str
    run_id: str
    processes: int = 4
    seed: int = 0
    keys: Sequence[str] = KEYS
    read_share: float = 0.3  # of the operations of a process that knows the version
    any_reads: HistoryWriter | None = None  # when given, one process reads from any instance
    timeout: float = 10.0  # seconds a request may take before its outcome is unknown
    refusals_unknown: bool = False  # a 503 refusal counts as info, not fail (`classify`)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    counts: dict[str, int] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)  # writes not ok: what they got

    async def run(self) -> None:
        auth = ("admin", self.password)
        async with httpx.AsyncClient(auth=auth, timeout=self.timeout) as http:
            tasks = [self._process(http, p) for p in range(self.processes)]
            if self.any_reads is not None:
                tasks.append(self._any_reader(http, self.processes))
            await asyncio.gather(*tasks)

    async def _process(self, http: httpx.AsyncClient, p: int) -> None:
        rng = random.Random(f"{self.seed}/{p}")
        instances = Instances(list(self.urls), patience=5.0)
        known: dict[str, int] = {}
        written = 0
        while not self.stop.is_set():
            key = rng.choice(list(self.keys))
            master = await self._master(http, instances)
            if master is None:
                continue
            if key not in known or rng.random() < self.read_share:
                outcome, version = await self._read(http, self.history, p, key, master)
                if outcome == "ok":
                    known[key] = version
                continue
            written += 1
            value = value_of(self.run_id, p, written)
            outcome, version = await self._write(http, instances, p, key, master, known[key], value)
            known.pop(key, None)  # a conflict or an unknown outcome: read it first next time
            if outcome == "ok":
                known[key] = version

    async def _master(self, http: httpx.AsyncClient, instances: Instances) -> str | None:
        try:
            return await arun(instances.find_master(), http)
        except ClientError:
            return None  # none for `patience`: look again, unless the run is over

    async def _write(
        self, http: httpx.AsyncClient, instances: Instances, p: int, key: str, master: str,
        expected: int, value: Any,
    ) -> tuple[Outcome, int]:  # fmt: skip
        """One guarded PUT, recorded; its outcome and the new version (0 unless ok)."""
        self.history.record(p, "invoke", "write", f"{KIND}/{key}", value, expected)
        answer: httpx.Response | BaseException
        try:
            answer = await http.put(
                f"{master}/config/{KIND}/{key}", content=orjson.dumps(value),
                headers={"Content-Type": "application/json", **guard(expected)},
            )  # fmt: skip
        except httpx.HTTPError as error:
            answer = error
        outcome = classify(answer, self.refusals_unknown)
        version, epoch, name = 0, None, self.names.get(master)
        if outcome == "ok" and isinstance(answer, httpx.Response):
            doc = orjson.loads(answer.content)
            version, epoch = int(doc["version"]), doc.get("epoch")
        elif isinstance(answer, httpx.Response):
            refused, named = refused_here(answer)
            if refused:  # follow the master it names (or look for one)
                instances.master = named if named in instances.urls else None
        else:
            instances.master = None
        step = self.history.record(
            p, outcome, "write", f"{KIND}/{key}", value, version or None, epoch,
            name if outcome == "ok" else None,
        )  # fmt: skip
        self._count(f"write {outcome}")
        if outcome != "ok":
            self._note(step.index, master, answer)
        return outcome, version

    def _note(self, index: int, url: str, answer: httpx.Response | BaseException) -> None:
        """Keeps what a write that was not ok got, but for plain conflicts (409, 412)."""
        note = answer_note(answer)
        if note is not None:
            self.answers.append({"index": index, "url": url, **note})

    async def _read(
        self, http: httpx.AsyncClient, history: HistoryWriter, p: int, key: str, url: str
    ) -> tuple[Outcome, int]:
        history.record(p, "invoke", "read", f"{KIND}/{key}")
        answer: httpx.Response | BaseException
        try:
            answer = await http.get(f"{url}/config/{KIND}/{key}")
        except httpx.HTTPError as error:
            answer = error
        outcome, version, value = read_result(answer)
        name = self.names.get(url) if outcome == "ok" else None
        history.record(p, outcome, "read", f"{KIND}/{key}", value, version, None, name)
        self._count(f"read {outcome}" + (" (any)" if history is not self.history else ""))
        return outcome, version

    async def _any_reader(self, http: httpx.AsyncClient, p: int) -> None:
        assert self.any_reads is not None
        rng = random.Random(f"{self.seed}/any")
        while not self.stop.is_set():
            url = rng.choice(list(self.urls))
            await self._read(http, self.any_reads, p, rng.choice(list(self.keys)), url)
            await asyncio.sleep(0.05)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


async def store_of(http: httpx.AsyncClient, url: str, instance: str) -> Store:
    """An instance's final store as the checker reads it."""
    events: list[dict[str, Any]] = []
    head, after = "", 0
    while True:
        response = await http.get(f"{url}/events", params={"after": after, "limit": PAGE})
        response.raise_for_status()
        page = [orjson.loads(line) for line in response.content.splitlines() if line]
        for event in page:
            head = event["chain"]
            if event["type"] in CONFIG_TYPES:
                events.append(event)
        if len(page) < PAGE:
            break
        after = page[-1]["position"]
    config = await http.get(f"{url}/config")
    config.raise_for_status()
    items = orjson.loads(config.content)["items"]
    versions = {f"{e['kind']}/{e['name']}": e["version"] for e in events}
    raw = {
        "instance": instance,
        "events": [{**e, "value": e["data"]} for e in events],
        "state": {key: (versions.get(key, 0), value) for key, value in items.items()},
        "head": head,
    }
    return Store.from_dict(raw)


async def final_stores(names: Mapping[str, str], password: str) -> tuple[Store, Store]:
    """Both instances' stores (`names`: base URL -> instance), the master's first."""
    async with httpx.AsyncClient(auth=("admin", password), timeout=60) as http:
        stores = {url: await store_of(http, url, name) for url, name in names.items()}
        roles = {}
        for url in names:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                roles[url] = (await http.get(f"{url}/health")).json().get("role")
    order = sorted(names, key=lambda url: roles.get(url) != "master")
    first, second = (stores[url] for url in order)
    return first, second
