from hibachi.errors import Conflict, NotFound, RuleViolation


class BookingNotFound(NotFound):
    pass


class SlotUnavailable(Conflict):
    pass


class BookingRuleViolation(RuleViolation):
    pass


class InvalidTransition(Conflict):
    """The booking's status doesn't allow this change."""


class NotYourBooking(RuleViolation):
    """Identity check failed: the phone doesn't match and no valid code + last name."""

    status_code = 403
