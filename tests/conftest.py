"""Shared test settings. Fixtures `scripted_model` and `letta_home` come from the
`lettabot.testing.pytest_plugin` plugin (registered as a pytest11 entry point)."""
