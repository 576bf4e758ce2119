"""lettabot's Discord adapter."""
