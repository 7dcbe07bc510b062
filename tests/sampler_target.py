"""A process for tests/test_sampler.py to profile: half a second of CPU in an asyncio task."""

import asyncio
import time


async def spin() -> None:
    started = time.process_time()
    while time.process_time() - started < 0.5:
        sum(range(1000))


if __name__ == "__main__":
    asyncio.run(spin())
