"""The lettabot runtime: routes chat traffic to Letta agent conversations."""
