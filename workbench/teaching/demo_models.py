"""Typed SQLAlchemy 2.0 models of the demo app (``data/demo/schema.sql``), for the loading-patterns notebook.

Relationships default to ``lazy="raise"``: in async code an implicit lazy load cannot run (it would need
I/O inside attribute access), so it is better that touching an unloaded relationship fails loudly and
says which one, and that every query states what it loads (``selectinload``, ``joinedload``).
``Organization.projects`` keeps the default ``lazy="select"`` on purpose: it shows the ``MissingGreenlet``
error users meet, and what :class:`~sqlalchemy.ext.asyncio.AsyncAttrs` ``awaitable_attrs`` does about it.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Text, func, text
from sqlalchemy.dialects.postgresql import ENUM, JSONB
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base with ``awaitable_attrs`` on every model; datetimes are ``timestamptz``."""

    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


class MemberRole(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"


class TaskStatus(enum.StrEnum):
    todo = "todo"
    doing = "doing"
    done = "done"


def _pg_enum(kind: type[enum.Enum], name: str) -> ENUM:
    """Bind to the existing database type (never created or dropped by these models)."""
    return ENUM(kind, name=name, create_type=False, values_callable=lambda members: [m.value for m in members])


class User(Base):
    """The part of ``auth.users`` the demo's foreign keys point at (a stand-in, never created by us)."""

    __tablename__ = "users"
    __table_args__ = {"schema": "auth"}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str | None] = mapped_column(Text)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    # lazy="select" (the default) on purpose: see the module docstring
    projects: Mapped[list[Project]] = relationship(back_populates="organization", order_by="Project.id")
    memberships: Mapped[list[Membership]] = relationship(back_populates="organization", lazy="raise")

    def __repr__(self) -> str:
        return f"Organization(id={self.id!r}, name={self.name!r})"


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth.users.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str | None] = mapped_column(Text)
    full_name: Mapped[str | None] = mapped_column(Text)
    avatar_url: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    def __repr__(self) -> str:
        return f"Profile(email={self.email!r}, full_name={self.full_name!r})"


class Membership(Base):
    __tablename__ = "memberships"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth.users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[MemberRole] = mapped_column(_pg_enum(MemberRole, "member_role"), server_default="member")

    organization: Mapped[Organization] = relationship(back_populates="memberships", lazy="raise")
    # memberships and profiles both point at auth.users; join them on that shared key, read-only
    profile: Mapped[Profile] = relationship(
        primaryjoin="foreign(Membership.user_id) == Profile.id", viewonly=True, lazy="raise"
    )

    def __repr__(self) -> str:
        return f"Membership(org_id={self.org_id!r}, user_id={self.user_id!r}, role={self.role!r})"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    organization: Mapped[Organization] = relationship(back_populates="projects", lazy="raise")
    tasks: Mapped[list[Task]] = relationship(back_populates="project", lazy="raise", order_by="Task.id")

    def __repr__(self) -> str:
        return f"Project(id={self.id!r}, name={self.name!r})"


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth.users.id", ondelete="CASCADE"), server_default=text("auth.uid()"), index=True
    )
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[TaskStatus] = mapped_column(_pg_enum(TaskStatus, "task_status"), server_default="todo")
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    due_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    project: Mapped[Project] = relationship(back_populates="tasks", lazy="raise")
    owner: Mapped[Profile] = relationship(
        primaryjoin="foreign(Task.owner_id) == Profile.id", viewonly=True, lazy="raise"
    )

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, title={self.title!r}, status={self.status!r})"


__all__ = ["Base", "MemberRole", "Membership", "Organization", "Profile", "Project", "Task", "TaskStatus", "User"]
