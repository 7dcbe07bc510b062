"""How a trial talks to the agent: one driver per channel (sms, voice-text, voice-audio)."""
