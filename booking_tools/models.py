"""Import every domain's ORM models so the metadata is complete (Alembic, tests)."""

from booking_tools.admin.models import ApiKey, AuditEntry
from booking_tools.bookings.models import Booking
from booking_tools.customers.models import Customer
from booking_tools.deposits.models import Deposit
from booking_tools.locations.models import Location
from booking_tools.loyalty.models import LoyaltyAccount, LoyaltyEntry
from booking_tools.messaging.models import OutboundMessage
from booking_tools.reminders.models import Reminder
from booking_tools.waitlist.models import WaitlistEntry

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Booking",
    "Customer",
    "Deposit",
    "Location",
    "LoyaltyAccount",
    "LoyaltyEntry",
    "OutboundMessage",
    "Reminder",
    "WaitlistEntry",
]
