"""Twilio edge: webhook signature checks and webhook routes."""
