"""The price rules of the reference business, in integer cents (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

ADULT_CENTS = 55_00
CHILD_CENTS = 30_00
FILET_UPGRADE_CENTS = 5_00
LOBSTER_UPGRADE_CENTS = 15_00
TAX_RATE_BP = 925  # 9.25 % in basis points
FREE_TRAVEL_MILES = 20
TRAVEL_CENTS_PER_MILE = 2_00
DEPOSIT_CENTS = 100_00
FOOD_MINIMUM_CENTS = 550_00
MIN_ADULTS_WITHOUT_FOOD_MINIMUM = 10
MAX_GUESTS = 60
GRATUITY_LOW_PCT = 18
GRATUITY_HIGH_PCT = 20
POINTS_PER_REDEEM_STEP = 100
CENTS_PER_REDEEM_STEP = 10_00
MAX_REDEEM_SHARE_PCT = 50


@dataclass(frozen=True, slots=True)
class Party:
    adults: int
    children: int = 0
    toddlers: int = 0
    filet_upgrades: int = 0
    lobster_upgrades: int = 0

    @property
    def guests(self) -> int:
        return self.adults + self.children + self.toddlers


@dataclass(frozen=True, slots=True)
class Quote:
    food_subtotal: int
    upgrades: int
    discount: int
    tax: int
    travel_fee: int
    total: int
    deposit: int
    balance_due: int
    gratuity_low: int
    gratuity_high: int


def food_subtotal(party: Party) -> int:
    """Adults, children (3-12) and upgrades; under-3s eat free."""
    return (
        party.adults * ADULT_CENTS
        + party.children * CHILD_CENTS
        + party.filet_upgrades * FILET_UPGRADE_CENTS
        + party.lobster_upgrades * LOBSTER_UPGRADE_CENTS
    )


def travel_fee(miles: int) -> int:
    """Free within 20 miles of the base, then $2 per mile (one way)."""
    return max(0, miles - FREE_TRAVEL_MILES) * TRAVEL_CENTS_PER_MILE


def percent(cents: int, basis_points: int) -> int:
    """Round half up to the cent."""
    return (cents * basis_points + 5_000) // 10_000


def max_redeemable_points(subtotal: int) -> int:
    """Points usable on a booking: 100-point steps worth $10, at most 50 % of the food."""
    steps = (subtotal * MAX_REDEEM_SHARE_PCT // 100) // CENTS_PER_REDEEM_STEP
    return steps * POINTS_PER_REDEEM_STEP


def redeem_value(points: int) -> int:
    return points // POINTS_PER_REDEEM_STEP * CENTS_PER_REDEEM_STEP


def quote(party: Party, *, miles: int = 0, discount: int = 0) -> Quote:
    subtotal = food_subtotal(party)
    upgrades = party.filet_upgrades * FILET_UPGRADE_CENTS + party.lobster_upgrades * LOBSTER_UPGRADE_CENTS
    discount = min(discount, subtotal)
    taxable = subtotal - discount
    tax = percent(taxable, TAX_RATE_BP)
    travel = travel_fee(miles)
    total = taxable + tax + travel
    return Quote(
        food_subtotal=subtotal,
        upgrades=upgrades,
        discount=discount,
        tax=tax,
        travel_fee=travel,
        total=total,
        deposit=DEPOSIT_CENTS,
        balance_due=max(0, total - DEPOSIT_CENTS),
        gratuity_low=percent(taxable, GRATUITY_LOW_PCT * 100),
        gratuity_high=percent(taxable, GRATUITY_HIGH_PCT * 100),
    )


def party_problem(party: Party) -> str | None:
    """Why this party can't be booked online, or None when it can."""
    if party.adults < 0 or party.children < 0 or party.toddlers < 0:
        return "guest counts can't be negative"
    if party.adults < 1:
        return "a booking needs at least one adult"
    if party.filet_upgrades + party.lobster_upgrades > party.guests * 2:
        return "each guest picks two proteins, so at most two upgrades per guest"
    if party.guests > MAX_GUESTS:
        return (
            f"we take at most {MAX_GUESTS} guests online; for larger groups, corporate events "
            "or weddings our staff will plan it with you"
        )
    if party.adults < MIN_ADULTS_WITHOUT_FOOD_MINIMUM and food_subtotal(party) < FOOD_MINIMUM_CENTS:
        return (
            f"events need at least {MIN_ADULTS_WITHOUT_FOOD_MINIMUM} adults or a "
            f"${FOOD_MINIMUM_CENTS // 100} food minimum (this party comes to "
            f"${food_subtotal(party) / 100:.2f})"
        )
    return None
