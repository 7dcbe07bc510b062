"""SMS segment counting (GSM-7 vs UCS-2), shared by our senders and the local provider fakes."""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")  # two septets each (ESC + char)


def count_segments(body: str) -> int:
    """SMS segments for `body`: GSM-7 160/153 septets, else UCS-2 70/67 UTF-16 units."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in body):
        units = [1 if ch in GSM7_BASIC else 2 for ch in body]
        single, multi = 160, 153
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
        single, multi = 70, 67
    if sum(units) <= single:
        return 1
    segments, used = 1, 0
    for size in units:  # an escape or surrogate pair is never split across segments
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return segments
