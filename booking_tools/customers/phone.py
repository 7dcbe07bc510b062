"""Phone numbers: accepted in any common format, stored and returned in E.164."""

from __future__ import annotations

import phonenumbers

from hibachi.errors import RuleViolation

DEFAULT_REGION = "US"


class InvalidPhone(RuleViolation):
    pass


def to_e164(raw: str, *, region: str = DEFAULT_REGION) -> str:
    """Parse `raw` ("(408) 555-0123", "+1 408 555 0123", ...) into E.164 or raise InvalidPhone."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"'{raw}' is not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhone(f"'{raw}' is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
