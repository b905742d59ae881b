"""The checklist's vocabulary: one edit to one guest path, and one checklist item carrying its edits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """One change to one guest path; ``before``/``after`` None mean absent (created / removed).

    ``kind`` is ``file`` (text content), ``symlink`` (``after`` is the target) or ``dir``. ``mode``,
    ``uid`` and ``gid`` apply to what is created; a replaced file keeps its own unless ``mode`` is set.
    """

    path: str
    before: str | None
    after: str | None
    reason: str
    kind: str = "file"
    mode: int | None = None
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class CheckItem:
    """One line of the checklist: ``pass``, ``fix`` (prepare repairs it), ``fail`` or ``info``."""

    name: str
    status: str
    reason: str
    edits: tuple[Edit, ...] = ()
