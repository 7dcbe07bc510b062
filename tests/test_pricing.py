"""The reference business's price rules, as pure functions."""

from __future__ import annotations

from booking_tools.bookings import pricing
from booking_tools.bookings.pricing import Party


def test_adults_children_and_toddlers_are_priced_per_head() -> None:
    assert pricing.food_subtotal(Party(adults=10, children=4, toddlers=2)) == 10 * 5500 + 4 * 3000


def test_upgrades_add_to_the_food_subtotal() -> None:
    party = Party(adults=10, filet_upgrades=3, lobster_upgrades=2)
    assert pricing.food_subtotal(party) == 10 * 5500 + 3 * 500 + 2 * 1500


def test_tax_is_9_25_percent_of_food_and_travel_is_free_within_20_miles() -> None:
    q = pricing.quote(Party(adults=10), miles=20)
    assert q.food_subtotal == 55_000
    assert q.tax == 5_088  # 9.25 % of $550.00, rounded to the cent
    assert q.travel_fee == 0
    assert q.total == 55_000 + 5_088
    assert q.deposit == 10_000
    assert q.balance_due == q.total - 10_000


def test_travel_costs_two_dollars_per_mile_beyond_20() -> None:
    assert pricing.quote(Party(adults=10), miles=35).travel_fee == 15 * 200


def test_points_redeem_in_100_steps_up_to_half_the_food() -> None:
    assert pricing.max_redeemable_points(55_000) == 2_700  # $275 is half; $270 in $10 steps
    assert pricing.redeem_value(250) == 2_000


def test_small_parties_need_the_food_minimum() -> None:
    assert pricing.party_problem(Party(adults=9)) is not None  # $495 < $550
    assert pricing.party_problem(Party(adults=9, children=2)) is None  # $555
    assert pricing.party_problem(Party(adults=10)) is None


def test_more_than_60_guests_go_to_staff() -> None:
    problem = pricing.party_problem(Party(adults=50, children=11))
    assert problem is not None
    assert "staff" in problem
    assert pricing.party_problem(Party(adults=50, children=10)) is None
