"""Column types shared by the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator, TypeEngine

_SQLITE_FORM = "%04d-%02d-%02d %02d:%02d:%02d.%06d"

#: An auto-incrementing 64-bit key (SQLite only autoincrements INTEGER PRIMARY KEY).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class _SQLiteText(TypeEngine[Any]):
    """SQLite's DATETIME column as stored (`YYYY-MM-DD HH:MM:SS.ffffff`), unconverted:
    `UTCDateTime` turns it into an aware datetime in one C call instead of SQLAlchemy's
    parse plus a `replace(tzinfo=...)` (most of a 100-task list's CPU, measured)."""

    __visit_name__ = "DATETIME"  # the same DDL as SQLAlchemy's DateTime

    def bind_processor(self, dialect: Dialect) -> Any:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return None


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out, whatever the database stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return _SQLiteText()
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLAlchemy's SQLite storage format, so stored values compare as before.
            return _SQLITE_FORM % (
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            if len(value) == 26 and value[10] == " ":
                return datetime.fromisoformat(value + "+00:00")
            when = datetime.fromisoformat(value)
        else:
            when = value
        assert isinstance(when, datetime)
        if when.tzinfo is None:
            return when.replace(tzinfo=UTC)
        return when.astimezone(UTC)
