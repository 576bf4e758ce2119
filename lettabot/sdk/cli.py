"""The ``letta`` CLI this SDK drives: where it is, and the environment it runs in.

For callers that start the CLI themselves (``letta server``, ``letta connect``...) the way
the SDK does: ``subprocess.run([find_cli(), ...], env=cli_env(extra))``.
"""

from lettabot.sdk._internal.cli import cli_env, find_cli, passes_to_cli

__all__ = ["cli_env", "find_cli", "passes_to_cli"]
