"""A job's inputs as a stream of items: folders, files, globs and tables.

Each INPUT of ``p2pai map`` is one of

* a **folder**: walked recursively in sorted order (each folder's entries sorted by name,
  hidden ones skipped, links to folders not followed); the files a kind takes
  (:meth:`Kind.accepts`) are its items, keyed by their path relative to the folder;
* a **file**: one item, keyed by the path as given; a kind must take it;
* a **glob** (``scans/*.png``, ``**`` recursive): the files it matches, in sorted order;
* a **table** (``.csv``, ``.parquet``, ``.jsonl``, ``.npy``, ``.npz``): one item a row
  (:mod:`netcore.jobs.tables`), keyed by the row number from 1.

Nothing is listed or read ahead of the job: a folder of 100,000 files is walked as the job
goes (once more beforehand to count it, for the progress bar, holding nothing). What cannot
work at all (no such file, an empty folder, a file the kind does not take) is a
:class:`SourceError` before any work; what one item lacks is an :class:`Unreadable` item
whose record carries the error.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from netcore.models.inputs import kind_of
from netcore.models.kinds.base import Item

TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".jsonl", ".npy", ".npz"})
"""A file with one of these endings given as INPUT is a table: one item a row."""


class SourceError(Exception):
    """Inputs a job cannot start with; the message is one line."""


@dataclass(frozen=True, slots=True)
class Unreadable(Item):
    """An item that could not be read from its source (a row with a missing column, a line
    that is not JSON): its record carries ``error`` and the job goes on."""

    error: str = ""


class Source(Protocol):
    """One INPUT: its items in order, and how many there are (for progress)."""

    label: str

    def count(self) -> int | None: ...

    def items(self) -> Iterator[Item]: ...


@dataclass(frozen=True, slots=True)
class Given:
    """One INPUT argument, classified: ``what`` is folder, file, glob or table."""

    arg: str
    what: str
    paths: tuple[Path, ...] = ()
    """The folder, the file, the table or (a glob) the files matched, in sorted order."""


def classify(arg: str) -> Given:
    """What ``arg`` names; a :class:`SourceError` for nothing at all."""
    path = Path(arg).expanduser()
    if path.is_dir():
        return Given(arg, "folder", (path,))
    if path.is_file():
        what = "table" if path.suffix.lower() in TABLE_SUFFIXES else "file"
        return Given(arg, what, (path,))
    if path.exists():
        raise SourceError(f"INPUT {arg}: {kind_of(path)}, not a file or folder")
    if glob.has_magic(arg):
        matches = sorted(
            Path(m)
            for m in glob.iglob(os.path.expanduser(arg), recursive=True)
            if Path(m).is_file()
        )
        if not matches:
            raise SourceError(f"INPUT {arg}: matches no file")
        return Given(arg, "glob", tuple(matches))
    raise SourceError(f"INPUT {arg}: no such file or folder")


def walk(root: Path) -> Iterator[Path]:
    """The files under ``root``, depth first, each folder's entries sorted by name."""
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise SourceError(f"INPUT {root}: cannot list it ({exc.strerror or exc})") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from walk(Path(entry.path))
            elif entry.is_file():
                yield Path(entry.path)
        except OSError:
            continue  # vanished or unreadable while walking: not an input


@dataclass(slots=True)
class FolderSource:
    root: Path
    accepts: Callable[[Path], bool]
    prefix: str = ""
    """Put before each key when a job has several INPUTs (``scans/a.png``)."""
    label: str = ""

    def files(self) -> Iterator[Path]:
        return (p for p in walk(self.root) if self.accepts(p))

    def count(self) -> int | None:
        return sum(1 for _ in self.files())

    def items(self) -> Iterator[Item]:
        for path in self.files():
            rel = path.relative_to(self.root).as_posix()
            yield Item(f"{self.prefix}{rel}", path=path)


@dataclass(slots=True)
class FilesSource:
    """Files named one by one (or by a glob): keyed by the path as it was given."""

    paths: Sequence[Path]
    label: str = ""

    def count(self) -> int | None:
        return len(self.paths)

    def items(self) -> Iterator[Item]:
        for path in self.paths:
            yield Item(str(path), path=path)


@dataclass(slots=True)
class JobInputs:
    """All the INPUTs of a job, in the order given."""

    sources: list[Source] = field(default_factory=list)
    tables: bool = False
    """Rows of tables (True) or files (False)."""

    def count(self) -> int | None:
        total = 0
        for source in self.sources:
            n = source.count()
            if n is None:
                return None
            total += n
        return total

    def items(self) -> Iterator[Item]:
        for source in self.sources:
            yield from source.items()

    @property
    def notes(self) -> list[str]:
        """What was chosen for the user (a table's columns of numbers), to be said."""
        return [n for s in self.sources for n in getattr(s, "notes", ())]


def takes_text(suffixes: Sequence[str] | frozenset[str]) -> str:
    shown = ", ".join(sorted(suffixes))
    return f"it takes {shown} files" if shown else "it takes no files (tables only)"


def file_sources(
    given: Sequence[Given],
    accepts: Callable[[Path], bool],
    model_words: str,
    suffixes: frozenset[str],
) -> JobInputs:
    """Folders, files and globs for a kind that takes files; ``model_words`` names the model
    in errors (``model digits (image-classification)``)."""
    several = len(given) > 1
    inputs = JobInputs(tables=False)
    for g in given:
        if g.what == "folder":
            root = g.paths[0]
            source = FolderSource(root, accepts, f"{g.arg.rstrip('/')}/" if several else "", g.arg)
            if next(source.files(), None) is None:
                if next(walk(root), None) is None:
                    raise SourceError(f"INPUT {g.arg}: an empty folder")
                raise SourceError(
                    f"INPUT {g.arg}: no file that {model_words} takes in it ({takes_text(suffixes)})"
                )
            inputs.sources.append(source)
        elif g.what in ("file", "glob"):
            refused = [p for p in g.paths if not accepts(p)]
            if g.what == "file" and refused:
                raise SourceError(
                    f"INPUT {g.arg}: {kind_of(refused[0])}; {model_words} does not take it "
                    f"({takes_text(suffixes)})"
                )
            paths = [p for p in g.paths if accepts(p)]
            if not paths:
                raise SourceError(
                    f"INPUT {g.arg}: matches no file that {model_words} takes "
                    f"({takes_text(suffixes)})"
                )
            inputs.sources.append(FilesSource(paths, g.arg))
        else:
            raise SourceError(f"INPUT {g.arg}: a table; give either tables or files, not both")
    return inputs
