"""The scripted OpenAI-compatible model server, for tests: it ships with the runtime (it is
``lettabot run --demo``'s model) as :mod:`lettabot.runtime.demo_model`; this is its name
for tests.

Command line::

    python -m lettabot.testing.scripted_model --port 0
"""

from lettabot.runtime.demo_model import (
    ChatRequest,
    Reply,
    Rule,
    ScriptedModelServer,
    ToolCall,
    demo_brain,
    main,
)

__all__ = ["ChatRequest", "Reply", "Rule", "ScriptedModelServer", "ToolCall", "demo_brain",
           "main"]

if __name__ == "__main__":
    main()
