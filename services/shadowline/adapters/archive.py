"""A backup archive as a file: gzip'd lines (domain.backup says what the lines are).

Reading refuses, as BackupRefused, whatever gzip or the file system says is wrong (not gzip,
corrupted, cut short), and lines longer than domain.backup.MAX_LINE before they are held whole.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shadowline.domain.backup import MAX_LINE
from shadowline.domain.errors import BackupRefused


def lines(path: Path) -> Iterator[bytes]:
    """The archive's uncompressed lines, each with its line end (the last may lack one)."""
    try:
        with gzip.open(path, "rb") as stream:
            while data := stream.readline(MAX_LINE + 1):
                if len(data) > MAX_LINE:
                    raise BackupRefused(f"a line of {path} is longer than {MAX_LINE} bytes")
                yield data
    except FileNotFoundError as error:
        raise BackupRefused(f"no archive at {path}") from error
    except gzip.BadGzipFile as error:
        raise BackupRefused(f"{path} is not a gzip'd shadowline backup ({error})") from error
    except (EOFError, zlib.error) as error:
        raise BackupRefused(f"{path} is truncated or corrupted ({error})") from error
    except OSError as error:
        raise BackupRefused(f"cannot read {path}: {error.strerror or error}") from error


def compressed(out: BinaryIO) -> gzip.GzipFile:
    """A gzip stream onto `out` (mtime 0: the same content makes the same bytes)."""
    return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)
