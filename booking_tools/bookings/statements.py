"""Pre-built Core statements for booking creation, the API's hottest write.

Built once at import (they are pure expressions, no I/O), so a booking pays neither for
building SQL expressions nor for the ORM's unit of work. A booking takes four
statements: customer upsert + location, slot lock, capacity-guarded booking insert,
and deposit + deposit-link text + audit line together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import Select

from booking_tools.admin.models import AuditEntry
from booking_tools.bookings.models import HOLDS_SLOT, Booking
from booking_tools.customers.models import Customer
from booking_tools.deposits.models import Deposit
from booking_tools.locations.models import Location
from booking_tools.messaging.models import OutboundMessage
from hibachi.db import table_of

bookings = table_of(Booking)
customers = table_of(Customer)
locations = table_of(Location)
deposits = table_of(Deposit)
messages = table_of(OutboundMessage)
audit_log = table_of(AuditEntry)

# The booking's columns as written at creation (created_at comes from the server).
BOOKING_INSERT_COLUMNS = [c for c in bookings.c if c.name != "created_at"]


def _values(table: Table, prefix: str, *, skip: tuple[str, ...] = ("created_at",)) -> dict[str, Any]:
    """`{column: :prefix_column}` for every column the insert writes."""
    return {c.name: bindparam(prefix + c.name, type_=c.type) for c in table.c if c.name not in skip}


def _customer_upsert_with_location() -> Select[Any]:
    """Upsert the customer by phone (filling a missing name) and read the location by slug.

    One round trip. The customer's columns keep their names; the location's are
    prefixed `location_` (and NULL when the slug is unknown).
    """
    upsert = (
        pg_insert(customers)
        .values(
            id=bindparam("customer_id", type_=customers.c.id.type),
            phone=bindparam("phone", type_=String),
            name=bindparam("name", type_=String),
            language="en",
            sms_transactional=True,
            sms_marketing=False,
        )
        .on_conflict_do_update(
            index_elements=["phone"],
            set_={"name": func.coalesce(customers.c.name, literal_column("excluded.name"))},
        )
        .returning(*customers.c)
        .cte("customer")
    )
    return select(upsert, *(c.label(f"location_{c.name}") for c in locations.c)).select_from(
        upsert.outerjoin(locations, locations.c.slug == bindparam("slug", type_=String))
    )


CUSTOMER_AND_LOCATION = _customer_upsert_with_location()

IDEMPOTENT_REPLAY = select(bookings.c.id).where(bookings.c.idempotency_key == bindparam("key", type_=String))

SLOT_LOCK = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))


def _insert_booking_if_room() -> Any:
    """Insert the booking only while fewer than `capacity` bookings hold its slot.

    Run it after taking the slot's lock, as its own statement: under READ COMMITTED its
    snapshot (and so the count) is taken after every earlier holder has committed.
    """
    held = (
        select(func.count())
        .where(
            bookings.c.location_id == bindparam("location_id", type_=bookings.c.location_id.type),
            bookings.c.event_date == bindparam("event_date", type_=bookings.c.event_date.type),
            bookings.c.start_time == bindparam("start_time", type_=bookings.c.start_time.type),
            bookings.c.status.in_(HOLDS_SLOT),
        )
        .scalar_subquery()
    )
    row = [
        cast(bindparam(c.name, type_=String), c.type)
        if c.name == "status"
        else bindparam(c.name, type_=c.type)
        for c in BOOKING_INSERT_COLUMNS
    ]
    return (
        insert(bookings)
        .from_select(
            [c.name for c in BOOKING_INSERT_COLUMNS],
            select(*row).where(held < bindparam("capacity", type_=BigInteger)),
        )
        .returning(bookings.c.created_at)
    )


INSERT_BOOKING_IF_ROOM = _insert_booking_if_room()


def _insert_deposit_and_text(*, with_audit: bool) -> Select[Any]:
    """Insert the deposit, the deposit-link text (outbox, de-duplicated) and the audit line.

    Returns one row: the deposit's created_at, and 1 if the text was written (0 when its
    dedupe key existed).
    """
    deposit = (
        insert(deposits).values(_values(deposits, "deposit_")).returning(deposits.c.created_at).cte("deposit")
    )
    text = (
        pg_insert(messages)
        .values(
            _values(
                messages,
                "message_",
                skip=("created_at", "provider_message_id", "sent_at", "status_updated_at"),
            )
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(messages.c.id)
        .cte("text")
    )
    stmt = select(deposit.c.created_at, select(func.count()).select_from(text).scalar_subquery())
    if with_audit:
        stmt = stmt.add_cte(insert(audit_log).values(_values(audit_log, "audit_")).cte("audit"))
    return stmt


INSERT_DEPOSIT_AND_TEXT = _insert_deposit_and_text(with_audit=False)
INSERT_DEPOSIT_TEXT_AND_AUDIT = _insert_deposit_and_text(with_audit=True)
