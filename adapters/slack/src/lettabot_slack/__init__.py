"""Slack adapter for lettabot."""
