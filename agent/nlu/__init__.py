"""Natural-language understanding for the deterministic brain: intents and slots.

Dates come from `dateparser`, spelled numbers from `text2num`, typo tolerance from
`rapidfuzz`; the small patterns here only find *where* a date, time or count is said.
Entry point: `agent.nlu.understand.understand`.
"""
