"""What the customer wants, from keyword phrases over normalised text (typos already fixed).

Rules are checked in priority order: safety first (injection, abuse), then the
requests that must never be mistaken for something else ("cancel my booking" is a
booking cancellation, "talk to a person" a transfer), then the common tasks.
"""

from __future__ import annotations

import enum
import re

from agent.nlu.text import has_phrase, tokens


class Intent(enum.StrEnum):
    injection = "injection"
    points_request = "points_request"
    abuse = "abuse"
    transfer = "transfer"
    complaint = "complaint"
    large_event = "large_event"
    marketing_out = "marketing_out"
    marketing_in = "marketing_in"
    texts_off = "texts_off"
    cancel = "cancel"
    reschedule = "reschedule"
    deposit = "deposit"
    waitlist = "waitlist"
    loyalty = "loyalty"
    my_bookings = "my_bookings"
    quote = "quote"
    availability = "availability"
    book = "book"
    faq = "faq"
    thanks = "thanks"
    bye = "bye"
    greeting = "greeting"
    unknown = "unknown"


INJECTION = (
    "ignore previous",
    "ignore all previous",
    "ignore your instructions",
    "ignore the above",
    "ignore all instructions",
    "disregard previous",
    "disregard your instructions",
    "forget your instructions",
    "system prompt",
    "developer mode",
    "you are now",
    "act as",
    "pretend you are",
    "pretend to be",
    "jailbreak",
    "admin mode",
    "new instructions",
    "override",
)
POINTS_REQUEST = re.compile(
    r"\b(?:add|give|credit|put|grant|award|transfer|increase|set)\b.*\bpoints?\b"
    r"|\bpoints?\b.*\b(?:to|into|on) my (?:account|balance)\b|\bfree points\b|\bbonus points\b"
)
ABUSE = (
    "fuck",
    "fucking",
    "fucked",
    "shit",
    "bitch",
    "asshole",
    "idiot",
    "stupid",
    "moron",
    "dumb",
    "useless",
    "screw you",
    "shut up",
    "suck",
    "sucks",
    "damn you",
    "wtf",
)
TRANSFER = (
    "talk to a person",
    "speak to a person",
    "talk to someone",
    "speak to someone",
    "speak with someone",
    "talk with someone",
    "real person",
    "a person",
    "human",
    "a human",
    "live agent",
    "an agent",
    "representative",
    "rep",
    "manager",
    "supervisor",
    "staff",
    "operator",
    "owner",
    "call me back",
    "have someone call",
    "someone call me",
    "customer service",
)
COMPLAINT = (
    "complaint",
    "complain",
    "rude",
    "was late",
    "were late",
    "showed up late",
    "never showed",
    "no show",
    "didn't show",
    "terrible",
    "awful",
    "horrible",
    "disappointed",
    "disappointing",
    "unprofessional",
    "worst",
    "food poisoning",
    "got sick",
    "undercooked",
    "raw",
    "bad experience",
    "not happy",
    "unhappy",
    "ruined",
    "overcharged",
)
LARGE_EVENT = (
    "wedding",
    "weddings",
    "corporate",
    "company event",
    "company party",
    "office party",
    "work event",
    "team building",
    "conference",
    "festival",
    "fundraiser",
    "rehearsal dinner",
)
MARKETING = (
    "promo",
    "promos",
    "promotion",
    "promotions",
    "offers",
    "offer",
    "deals",
    "deal",
    "marketing",
    "newsletter",
    "specials",
    "discounts",
    "coupons",
    "ads",
)
OPT_OUT_VERBS = (
    "stop",
    "unsubscribe",
    "opt out",
    "no more",
    "don't send",
    "do not send",
    "remove me",
    "take me off",
    "stop sending",
    "quit sending",
    "don't want",
)
OPT_IN_VERBS = ("opt in", "sign me up", "subscribe", "send me", "i want", "i'd like", "add me", "get")
TEXTS_OFF = (
    "stop texting me",
    "stop texting",
    "don't text me",
    "do not text me",
    "stop all texts",
    "no more texts",
    "stop messaging me",
    "unsubscribe me",
)
BOOKING_NOUNS = (
    "booking",
    "bookings",
    "reservation",
    "reservations",
    "event",
    "party",
    "appointment",
    "order",
    "it",
    "dinner",
    "chef",
    "hibachi",
)
CANCEL = re.compile(r"\bcancel(?:led|ling|lation)?\b")
RESCHEDULE = (
    "reschedule",
    "rescheduling",
    "move my",
    "move the",
    "move it",
    "change the date",
    "change the time",
    "change my date",
    "change my booking",
    "change my reservation",
    "change the booking",
    "postpone",
    "push back",
    "push it",
    "different date",
    "different day",
    "different time",
    "another date",
    "another day",
)
DEPOSIT = (
    "deposit link",
    "payment link",
    "the link",
    "resend",
    "send the link",
    "pay the deposit",
    "pay my deposit",
    "pay deposit",
    "link again",
    "new link",
    "didn't get the link",
    "never got the link",
    "link expired",
    "link",
)
WAITLIST = ("waitlist", "wait list", "waiting list", "put me on the list", "notify me", "let me know if")
LOYALTY = ("points", "point balance", "rewards", "reward", "loyalty", "tier", "hibachi rewards", "my status")
MY_BOOKINGS = (
    "my booking",
    "my bookings",
    "my reservation",
    "my reservations",
    "my event",
    "my party",
    "when is my",
    "do i have a booking",
    "booking status",
    "status of my",
    "what did i book",
    "upcoming booking",
    "look up my",
)
QUOTE = (
    "how much",
    "price",
    "prices",
    "pricing",
    "cost",
    "costs",
    "quote",
    "estimate",
    "total",
    "rate",
    "rates",
    "charge",
    "what would it be",
    "ballpark",
)
AVAILABILITY = (
    "available",
    "availability",
    "free",
    "open",
    "openings",
    "opening",
    "any slots",
    "slots",
    "what times",
    "what days",
    "what dates",
    "booked up",
    "fully booked",
    "do you have",
    "can you do",
    "still have",
)
BOOK = (
    "book",
    "booking",
    "reserve",
    "reservation",
    "make a reservation",
    "schedule",
    "hire",
    "set up",
    "i'd like a chef",
    "want a chef",
    "need a chef",
    "hibachi party",
    "want to have",
    "i'd like to have",
    "sign up",
    "lock it in",
)
FAQ_TOPICS = (
    "allergy",
    "allergies",
    "allergic",
    "gluten",
    "vegan",
    "vegetarian",
    "dairy",
    "nut",
    "nuts",
    "shellfish",
    "soy",
    "sesame",
    "menu",
    "protein",
    "proteins",
    "food",
    "rain",
    "raining",
    "weather",
    "indoor",
    "indoors",
    "inside",
    "tip",
    "tips",
    "tipping",
    "gratuity",
    "travel",
    "fee",
    "fees",
    "miles",
    "area",
    "areas",
    "serve",
    "cover",
    "provide",
    "bring",
    "tables",
    "chairs",
    "plates",
    "propane",
    "grill",
    "space",
    "policy",
    "policies",
    "refund",
    "tax",
    "how long",
    "minimum",
    "sake",
    "alcohol",
    "drinks",
    "dessert",
    "setup",
    "clean up",
    "cleanup",
    "included",
    "include",
    "upgrade",
    "upgrades",
    "lobster",
    "filet",
    "kids eat",
    "per person",
    "per adult",
    "per kid",
    "per child",
    "cash",
    "card",
    "deposit",
    "referral",
    "refer",
    "expire",
    "halal",
    "kosher",
    "spicy",
    "leftovers",
    "privacy",
)
QUESTION_WORDS = (
    "what",
    "how",
    "do",
    "does",
    "can",
    "is",
    "are",
    "will",
    "should",
    "who",
    "where",
    "when",
    "which",
    "any",
    "could",
    "would",
    "why",
)
THANKS = ("thanks", "thank you", "thank u", "appreciate it", "much appreciated", "cheers")
BYE = (
    "bye",
    "goodbye",
    "good bye",
    "see you",
    "that's all",
    "that is all",
    "nothing else",
    "all set",
    "have a good",
)
GREETING = (
    "hi",
    "hello",
    "hey",
    "hiya",
    "howdy",
    "good morning",
    "good afternoon",
    "good evening",
    "yo",
    "greetings",
    "sup",
)


def is_question(text: str) -> bool:
    words = tokens(text)
    return text.rstrip().endswith("?") or bool(words and words[0] in QUESTION_WORDS)


def _marketing(text: str) -> Intent | None:
    if has_phrase(text, TEXTS_OFF) and not has_phrase(text, MARKETING):
        return Intent.texts_off
    if not has_phrase(text, MARKETING) or has_phrase(text, ("how much", "price")):
        return None
    if has_phrase(text, OPT_OUT_VERBS):
        return Intent.marketing_out
    if has_phrase(text, OPT_IN_VERBS):
        return Intent.marketing_in
    return None


def _cancel(text: str, has_code: bool) -> bool:
    if not CANCEL.search(text):
        return False
    policy_question = is_question(text) and has_phrase(text, ("policy", "if i", "what happens", "can i get"))
    return not policy_question and (has_code or has_phrase(text, BOOKING_NOUNS) or len(tokens(text)) <= 3)


def classify(text: str, *, has_code: bool = False, has_details: bool = False) -> Intent:
    """The most important thing normalised `text` asks for.

    `has_code`: a booking code was given; `has_details`: a day, time or party size was,
    which makes "how much ... lobster" a quote and "book ... gluten free?" a booking.
    """
    topical = has_phrase(text, FAQ_TOPICS) and not has_details
    words = tokens(text)
    if not words:
        return Intent.unknown
    if has_phrase(text, INJECTION):
        return Intent.injection
    if POINTS_REQUEST.search(text):
        return Intent.points_request
    if has_phrase(text, ABUSE):
        return Intent.abuse
    if has_phrase(text, TRANSFER) and not has_phrase(text, ("staff provide", "staff bring")):
        return Intent.transfer
    if has_phrase(text, COMPLAINT):
        return Intent.complaint
    if has_phrase(text, LARGE_EVENT):
        return Intent.large_event
    marketing = _marketing(text)
    if marketing:
        return marketing
    if _cancel(text, has_code):
        return Intent.cancel
    if has_phrase(text, RESCHEDULE):
        return Intent.reschedule
    if has_phrase(text, WAITLIST):
        return Intent.waitlist
    if has_phrase(text, DEPOSIT) and not (is_question(text) and has_phrase(text, ("how much", "refund"))):
        return Intent.deposit
    if has_phrase(text, LOYALTY) and not has_phrase(text, ("how do", "how does", "how can i earn")):
        return Intent.loyalty
    if has_phrase(text, MY_BOOKINGS) and not has_phrase(text, ("book", "make")):
        return Intent.my_bookings
    if has_phrase(text, QUOTE) and not topical:
        return Intent.quote
    if has_phrase(text, AVAILABILITY) and not topical:
        return Intent.availability
    if has_phrase(text, BOOK) and not (is_question(text) and topical):
        return Intent.book
    if has_phrase(text, FAQ_TOPICS) or (is_question(text) and len(words) >= 3):
        return Intent.faq
    if has_phrase(text, THANKS):
        return Intent.thanks
    if has_phrase(text, BYE):
        return Intent.bye
    if has_phrase(" ".join(words[:3]), GREETING):
        return Intent.greeting
    return Intent.unknown
