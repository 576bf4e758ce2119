"""What the page sends → :class:`InboundMessage`: pure functions, no I/O.

A browser tab is a private conversation with the bot (a DM-like scope keyed by its tab id).
"""

from __future__ import annotations

from collections.abc import Iterable

from lettabot.runtime.adapter import Attachment, InboundMessage, Scope

__all__ = ["ADAPTER_NAME", "inbound_from_send", "message_id_of", "scope_for"]

ADAPTER_NAME = "web"


def scope_for(tab: str) -> Scope:
    """A browser tab is a private conversation with the bot."""
    return Scope(adapter=ADAPTER_NAME, channel=tab, is_dm=True)


def message_id_of(tab: str, sent_id: str) -> str:
    """The platform id of the page's message ``sent_id`` in ``tab`` (the runtime dedupes
    a resend by it)."""
    return f"web-{tab}-{sent_id}"


def inbound_from_send(tab: str, text: str, sent_id: str, attachments: Iterable[Attachment],
                      *, user_id: str, user_name: str) -> InboundMessage:
    """A message typed in ``tab`` (``POST /api/send``), from the page's one user."""
    return InboundMessage(
        scope=scope_for(tab),
        user_id=user_id,
        user_name=user_name,
        text=text,
        message_id=message_id_of(tab, sent_id),
        mentioned=True,
        attachments=tuple(attachments),
    )
