"""Review decisions on suggested mappings, stored in the hub database.

Every accept / reject a reviewer makes is one row: the system pair, the objects, the source and
target field, the verdict, who and when — plus the model's probability and feature vector at the
time, so the model can be refit from decisions without re-profiling anything.  The Alembic
revision ``0003_mapping_reviews`` creates exactly this table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Engine, Float, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from tongbu.db import Base, session_scope


class MappingReview(Base):
    """One review decision on a suggested ``source_field → target_field`` pair."""

    __tablename__ = "mapping_reviews"
    __table_args__ = (Index("ix_mapping_reviews_pair", "source_system", "target_system"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_system: Mapped[str] = mapped_column(String(128), nullable=False)
    source_object: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    target_system: Mapped[str] = mapped_column(String(128), nullable=False)
    target_object: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    source_field: Mapped[str] = mapped_column(String(512), nullable=False)
    target_field: Mapped[str] = mapped_column(String(512), nullable=False)
    accepted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    features: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list, for refits
    decided_by: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    mapping_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)


@dataclass(frozen=True)
class SystemPair:
    """Which decisions apply: the source system/object and the target system/object."""

    source_system: str
    target_system: str
    source_object: str = ""
    target_object: str = ""


@dataclass(frozen=True)
class ReviewRecord:
    """A decision as read back from the store."""

    source_field: str
    target_field: str
    accepted: bool
    same_object: bool
    decided_by: str
    decided_at: datetime


def record_decision(
    pair: SystemPair,
    source_field: str,
    target_field: str,
    accepted: bool,
    *,
    decided_by: str = "",
    confidence: float | None = None,
    probability: float | None = None,
    features: Sequence[float] | None = None,
    mapping_file: str | None = None,
    engine: Engine | None = None,
    when: datetime | None = None,
) -> None:
    """Store one accept / reject decision."""
    with session_scope(engine) as s:
        s.add(
            MappingReview(
                source_system=pair.source_system,
                source_object=pair.source_object,
                target_system=pair.target_system,
                target_object=pair.target_object,
                source_field=source_field,
                target_field=target_field,
                accepted=accepted,
                confidence=confidence,
                probability=probability,
                features=json.dumps([round(float(v), 6) for v in features]) if features is not None else None,
                decided_by=decided_by,
                decided_at=when or datetime.now(UTC),
                mapping_file=mapping_file,
            )
        )


def decisions_for(pair: SystemPair, engine: Engine | None = None) -> list[ReviewRecord]:
    """Latest decision per (source field, target field) for a system pair, all objects.

    ``same_object`` tells whether the decision was made for the very same source and target objects.
    """
    with session_scope(engine) as s:
        rows = (
            s.execute(
                select(MappingReview)
                .where(
                    MappingReview.source_system == pair.source_system,
                    MappingReview.target_system == pair.target_system,
                )
                .order_by(MappingReview.decided_at, MappingReview.id)
            )
            .scalars()
            .all()
        )
        latest: dict[tuple[str, str, bool], ReviewRecord] = {}
        for r in rows:
            same = (r.source_object == pair.source_object) and (r.target_object == pair.target_object)
            latest[(r.source_field, r.target_field, same)] = ReviewRecord(
                r.source_field, r.target_field, bool(r.accepted), same, r.decided_by, r.decided_at
            )
        return list(latest.values())


def training_rows(engine: Engine | None = None) -> list[tuple[list[float], float, bool]]:
    """(features, model probability, accepted) of every decision that stored its features."""
    with session_scope(engine) as s:
        rows = s.execute(select(MappingReview).where(MappingReview.features.is_not(None))).scalars().all()
        out = []
        for r in rows:
            try:
                feats = json.loads(r.features or "[]")
            except ValueError:
                continue
            out.append((feats, float(r.probability if r.probability is not None else 0.5), bool(r.accepted)))
        return out
