"""The backup archive's format and what reading it proves (domain.backup, domain.restore): every
way an archive can be cut, reordered, tampered with or sealed with another key is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadowline.adapters import archive
from shadowline.adapters.resources import load_config_schemas
from shadowline.application.restore import _Appender
from shadowline.domain import trust
from shadowline.domain.backup import MAX_LINE, Manifest, Reader, line
from shadowline.domain.errors import BackupRefused
from shadowline.domain.events import Event, envelope
from shadowline.domain.restore import Verifier, resigned, start_refusal, target_refusal
from shadowline.domain.validation import Catalog
from tests.archives import SECRET, archive_lines, resealed, signed_log, write_archive

CATALOG = Catalog(load_config_schemas())
CLUSTER = "prod"


def verify(lines: Sequence[bytes], secret: str = SECRET, page: int = 4) -> tuple[Verifier, str]:
    """Read and check an archive the way restore does; (the verifier, the archive's MAC)."""
    reader = Reader(iter(lines), secret)
    verifier = Verifier(reader.manifest, secret, CATALOG)
    for events in reader.events(page):
        verifier.feed(events)
    verifier.finish(reader.state())
    return verifier, reader.close()


def edited(raw: bytes, **changes: Any) -> bytes:
    return line({**orjson.loads(raw), **changes})


def refusal(lines: Sequence[bytes], secret: str = SECRET) -> str:
    with pytest.raises(BackupRefused) as refused:
        verify(lines, secret)
    return str(refused.value)


def test_an_archive_reads_back_as_its_manifest_events_state_and_mac() -> None:
    events = signed_log(CLUSTER, 10)
    verifier, mac = verify(archive_lines(events, CLUSTER))
    assert verifier.position == 10 and verifier.chain == events[-1].chain
    assert verifier.items["system-mapping/m0"] == events[9].data
    assert len(mac) == 64
    manifest = verifier.manifest
    assert (manifest.cluster, manifest.instance, manifest.position) == (CLUSTER, "node-a", 10)


def test_an_empty_log_makes_an_archive_too() -> None:
    verifier, _ = verify(archive_lines([], CLUSTER))
    assert verifier.position == 0 and verifier.items == {}


def test_a_tampered_event_is_refused_at_its_position() -> None:
    lines = archive_lines(signed_log(CLUSTER, 10), CLUSTER)
    doc = orjson.loads(lines[4])
    lines[4] = edited(lines[4], data={**doc["data"], "internal_host": "evil.example"})
    assert "hash chain breaks at position 4" in refusal(resealed(lines))


def test_a_log_rechained_and_signed_with_another_secret_is_refused() -> None:
    forged = signed_log(CLUSTER, 6, secret="not-the-cluster-secret")
    assert "bad signature" in refusal(archive_lines(forged, CLUSTER))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "holds position 2 where 1 belongs"),
        (lambda ls: [*ls[:3], *ls[4:]], "holds position 4 where 3 belongs"),
        (lambda ls: [*ls[:3], ls[2], *ls[3:]], "holds position 2 where 3 belongs"),
        (lambda ls: [*ls[:5], *ls[7:]], "ends after 4 of 6 events"),
    ],
    ids=["reordered", "missing", "repeated", "events-cut"],
)
def test_a_line_out_of_place_is_refused(change: Any, words: str) -> None:
    lines = archive_lines(signed_log(CLUSTER, 6), CLUSTER)
    assert words in refusal(change(lines))


def test_a_truncated_archive_is_refused_wherever_it_was_cut() -> None:
    lines = archive_lines(signed_log(CLUSTER, 6), CLUSTER)
    assert "ends before the signature" in refusal(lines[:-1])
    assert "ends before the state" in refusal(lines[:-2])
    assert "cut short" in refusal([*lines[:-1], lines[-1][:-10]])
    assert "should be the manifest" in refusal([b'{"not": 1}\n'])
    assert "not a shadowline backup" in refusal([b'{"manifest": {"format": "tar"}}\n'])


def test_the_wrong_secret_is_refused() -> None:
    lines = archive_lines(signed_log(CLUSTER, 6), CLUSTER)
    assert "SHADOWLINE_CLUSTER_SECRET" in refusal(lines, secret="another-secret-entirely")


def test_an_edited_manifest_fails_the_archives_signature() -> None:
    lines = archive_lines(signed_log(CLUSTER, 6), CLUSTER)
    manifest = orjson.loads(lines[0])["manifest"]
    lines[0] = line({"manifest": {**manifest, "origin_instance": "node-b"}})
    assert "signature does not verify" in refusal(lines)


def test_an_archive_claiming_another_cluster_is_refused_by_its_events_signatures() -> None:
    events = signed_log(CLUSTER, 6)
    lines = archive_lines(events, CLUSTER, manifest={"cluster": "staging"})
    assert "bad signature" in refusal(lines)  # each event is signed for its own cluster


def test_a_state_that_is_not_the_fold_of_the_events_is_refused() -> None:
    events = signed_log(CLUSTER, 6)
    lines = archive_lines(events, CLUSTER, items={"system-mapping/m0": events[0].data})
    assert "not the fold of its events" in refusal(lines)


def test_anything_after_the_signature_is_refused() -> None:
    lines = archive_lines(signed_log(CLUSTER, 3), CLUSTER)
    assert "follows the signature" in refusal([*lines, lines[1]])


def test_a_format_version_this_program_does_not_read_is_refused() -> None:
    lines = archive_lines(signed_log(CLUSTER, 3), CLUSTER, manifest={"format_version": 2})
    assert "reads version 1 only" in refusal(lines)


def test_a_malformed_manifest_or_event_line_says_which_line() -> None:
    lines = archive_lines(signed_log(CLUSTER, 3), CLUSTER, manifest={"epoch": -1})
    assert "manifest is malformed" in refusal(lines)
    lines = archive_lines(signed_log(CLUSTER, 3), CLUSTER)
    assert "line 3 is not JSON" in refusal([*lines[:2], b"{oops\n", *lines[3:]])
    assert "line 2 should be the event at position 1" in refusal([lines[0], b"{}\n", *lines[2:]])


def test_events_of_another_log_spliced_in_are_refused() -> None:
    events = signed_log(CLUSTER, 3)
    skipped = [events[0], *signed_log(CLUSTER, 3)[1:]]  # another log's chain from position 2
    assert "chain breaks at position 2" in refusal(archive_lines(skipped, CLUSTER))


def test_an_unsigned_prefix_passes_but_a_wholly_unsigned_log_does_not() -> None:
    unsigned = signed_log(CLUSTER, 4, secret=None)
    assert "no event of the log is signed" in refusal(archive_lines(unsigned, CLUSTER))


def test_restoring_under_the_archives_cluster_name_or_its_lineage_is_refused() -> None:
    manifest = Manifest.of(orjson.loads(archive_lines([], CLUSTER)[0])["manifest"])
    assert "second master" in str(target_refusal(manifest, {CLUSTER}, CLUSTER))
    assert "restored from cluster 'old'" in str(target_refusal(manifest, {CLUSTER, "old"}, "old"))
    assert target_refusal(manifest, {CLUSTER}, "prod-2") is None


def test_a_restored_store_starts_only_as_the_cluster_it_was_restored_as() -> None:
    restored = {"cluster": "prod-2", "origin": {"cluster": "prod"}}
    assert start_refusal(None, "prod") is None
    assert start_refusal(restored, "prod-2") is None
    refused = start_refusal(restored, "prod")
    assert refused is not None and "SHADOWLINE_CLUSTER=prod-2" in refused


def test_resigned_events_keep_their_chain_and_verify_for_the_new_cluster_only() -> None:
    events = signed_log(CLUSTER, 3)
    unsigned = signed_log(CLUSTER, 1, secret=None)
    again = resigned([*unsigned, *events[1:]], SECRET, "prod-2")
    assert [e.chain for e in again[1:]] == [e.chain for e in events[1:]]
    assert again[0].signature is None
    assert all(trust.event_signed(SECRET, "prod-2", e) for e in again[1:])
    assert not any(trust.event_signed(SECRET, CLUSTER, e) for e in again[1:])


def test_a_line_longer_than_the_limit_is_refused_before_it_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_LINE", 100)
    path = write_archive(tmp_path / "long.slbackup", [b"x" * 200 + b"\n"])
    with pytest.raises(BackupRefused, match="longer than 100 bytes"):
        list(archive.lines(path))
    assert MAX_LINE >= 64 * 1024 * 1024  # the product's limit holds a large state line


def test_a_file_that_is_cut_corrupted_or_not_gzip_is_refused(tmp_path: Path) -> None:
    whole = write_archive(tmp_path / "a.slbackup", archive_lines(signed_log(CLUSTER, 50), CLUSTER))
    assert len(list(archive.lines(whole))) == 53
    data = whole.read_bytes()
    cut = tmp_path / "cut.slbackup"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupRefused, match="truncated or corrupted"):
        list(archive.lines(cut))
    flipped = tmp_path / "flipped.slbackup"
    flipped.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    with pytest.raises(BackupRefused, match=r"truncated or corrupted|not a gzip"):
        list(archive.lines(flipped))
    plain = tmp_path / "plain.slbackup"
    plain.write_bytes(b"".join(archive_lines([], CLUSTER)))
    with pytest.raises(BackupRefused, match="not a gzip"):
        list(archive.lines(plain))
    with pytest.raises(BackupRefused, match="no archive at"):
        list(archive.lines(tmp_path / "absent.slbackup"))


class FakeSession:
    """Records what the appender asks of the store."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def fence(self, epoch: int) -> None:
        self.calls.append(("fence", epoch))

    async def append(self, events: Sequence[Event], expected: int) -> None:
        self.calls.append(("append", [e.epoch for e in events]))


def test_the_appender_splits_batches_at_each_new_term_and_fences_skipped_terms() -> None:
    session = FakeSession()
    appender = _Appender(session)  # type: ignore[arg-type]
    events = signed_log(CLUSTER, 6, epochs=[1, 1, 2, 2, 5, 5])
    asyncio.run(appender.add(events))
    assert session.calls == [
        ("append", [1, 1, 2, 2]),
        ("fence", 3),
        ("fence", 4),
        ("append", [5, 5]),
    ]
    assert appender.position == 6
    assert envelope(events[0])["epoch"] == 1


def test_a_page_of_events_is_cut_by_its_bytes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page is handed on whole before it is checked: many huge event lines must not all be
    held at once (backup.PAGE_BYTES)."""
    from shadowline.domain import backup

    lines = archive_lines(signed_log(CLUSTER, 10), CLUSTER)
    monkeypatch.setattr(backup, "PAGE_BYTES", len(lines[1]) * 2)  # about two events a page
    reader = Reader(iter(lines), SECRET)
    pages = [len(events) for events in reader.events(1000)]
    assert sum(pages) == 10 and max(pages) <= 3 and len(pages) >= 4
