"""The approval broker: ``can_use_tool`` requests → chat buttons → one atomic decision.

For each request the broker, in order:

1. blocks tools outside the tool filter (``letta.allowed_tools`` when non-empty,
   ``letta.disallowed_tools``): denied before anyone is asked, whatever is clicked;
2. for a *tainted* turn (:attr:`TurnOwner.untrusted`: its input quotes people who may not
   talk to the bot), skips 3.-4. and the asker's own click: only ``access.approvers``
   decide (no "Always allow"), and with none it is denied at once;
3. allows what :class:`~lettabot.runtime.tool_guard.ToolGuard` runs without asking
   (reads inside the workspace, the agent's own memory; see that module);
4. allows a call covered by an unexpired "Always allow" rule of the scope
   (:mod:`~lettabot.runtime.tool_rules`), for a person who may talk there;
5. otherwise shows an :class:`ApprovalView` through the scope's adapter and waits for a
   click: only ``access.approvers`` (if set) else, where ``access.self_approve`` allows it,
   the person whose message started the turn; with neither, it is denied at once. The
   store's atomic ``decide`` makes a double click decide once. A decision belongs to the
   exact input it was shown for. No decision within ``approvals.timeout_seconds`` → denied.

Every outcome is stored (the audit log) and the prompt is updated through the adapter's
``resolve_approval``. Button values carry the request id, so a click after a restart finds
its record (expired at startup) and gets a clear answer.

Conversations run in the CLI's ``strict`` mode, so every tool call reaches the broker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio

from lettabot import sdk
from lettabot.runtime.access import AccessPolicy
from lettabot.runtime.adapter import (
    Adapter,
    ApprovalDecision,
    ApprovalView,
    DecisionOutcome,
    MessageRef,
    Scope,
)
from lettabot.runtime.config import ApprovalsConfig, LettaConfig
from lettabot.runtime.jobs import TurnOwner
from lettabot.runtime.metrics import Metrics
from lettabot.runtime.reveal import WARNING, reveal
from lettabot.runtime.store import AllowRule, Approval, ApprovalStatus, Store, input_digest
from lettabot.runtime.tool_guard import CWD_TOOLS, ToolGuard
from lettabot.runtime.tool_rules import RuleProposal, matches, propose
from lettabot.runtime.tracing import attributes, tracing
from lettabot.runtime.workspaces import scoped_guard

__all__ = ["ApprovalBroker", "CanUseToolRequest", "ToolPolicy", "summarize_input"]

log = logging.getLogger("lettabot.runtime.approvals")

EDIT_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
RESTART_REASON = "lettabot restarted before anyone decided"
UNTRUSTED = ("⚠️ untrusted content: this turn quotes messages of people who may not talk "
             "to the bot — check that this call is what the asker wants.")


class CanUseToolRequest(Protocol):
    """What the SDK passes as the third argument of ``can_use_tool``."""

    @property
    def tool_name(self) -> str: ...
    @property
    def tool_input(self) -> dict[str, Any]: ...
    @property
    def tool_call_id(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def diffs(self) -> list[Any] | None: ...
    @property
    def signal(self) -> sdk.CancelSignal: ...


class McpReadOnly(Protocol):
    """Which MCP tools run without a click (see :mod:`lettabot.runtime.mcp`)."""

    def read_only(self, tool_name: str) -> str | None: ...


@dataclass(frozen=True)
class ToolPolicy:
    """The tool filter and the effective permission mode (see the module doc)."""

    mode: str  # the configured mode
    allowed: frozenset[str] = frozenset()
    disallowed: frozenset[str] = frozenset()
    guard: ToolGuard | None = None
    """What runs without a click; None: the configured mode decides by tool name only."""
    mcp: McpReadOnly | None = None
    """The agent's MCP servers: tools a trusted one marks read-only run without a click
    (not in ``strict`` mode)."""

    def guard_or_default(self) -> ToolGuard:
        """The guard (a workspace-less default: everything asks, rules match exactly)."""
        if self.guard is not None:
            return self.guard
        return ToolGuard.build(self.mode, Path(os.devnull), [], env=os.environ)

    @classmethod
    def from_config(cls, letta: LettaConfig, guard: ToolGuard | None = None) -> ToolPolicy:
        return cls(letta.permission_mode, frozenset(letta.allowed_tools),
                   frozenset(letta.disallowed_tools), guard)

    def for_scope(self, scope: Scope) -> ToolPolicy:
        """This policy judging paths against ``scope``'s own folder (see workspaces)."""
        if self.guard is None:
            return self
        return dataclasses.replace(self, guard=scoped_guard(self.guard, scope.key))

    @property
    def filtered(self) -> bool:
        return bool(self.allowed or self.disallowed)

    @property
    def cli_mode(self) -> str:
        """The mode conversations run in: always ``strict``, so that every tool call reaches
        the broker and :class:`ToolGuard` decides what runs without a click (the CLI's own
        ``standard`` reads any file and runs ``printenv`` without asking)."""
        return "strict"

    def auto_allow(self, tool_name: str, tool_input: Mapping[str, Any],
                   agent_id: str | None, conversation: str | None = None) -> str | None:
        """Why this call runs without asking anyone, or None."""
        if self.mcp is not None and self.mode != "strict" \
                and (why := self.mcp.read_only(tool_name)) is not None:
            return why
        if self.guard is not None:
            return self.guard.auto_allow(tool_name, tool_input, agent_id, conversation)
        return f"permission_mode {self.mode}" if self.pre_approved(tool_name) else None

    def blocked(self, tool_name: str) -> str | None:
        """Why ``tool_name`` may never run here, or None."""
        if tool_name in self.disallowed:
            return f"{tool_name} is in letta.disallowed_tools"
        if self.allowed and tool_name not in self.allowed:
            return f"{tool_name} is not in letta.allowed_tools"
        return None

    def forbidden(self, tool_name: str, tool_input: Mapping[str, Any],
                  agent_id: str | None = None, conversation: str | None = None) -> str | None:
        """Why this call (this input) may never run, whoever clicks, or None: a write to a
        permission file or Letta's state, a move out of the workspace (see
        :meth:`ToolGuard.forbidden`)."""
        return self.guard_or_default().forbidden(tool_name, tool_input, agent_id,
                                                 conversation)

    def pre_approved(self, tool_name: str) -> bool:
        """Whether the configured mode runs this tool without asking (by name only)."""
        edits = self.mode == "acceptEdits" and tool_name in EDIT_TOOLS
        return self.mode == "unrestricted" or edits


def request_key(conversation_id: str, cli_request_id: str | None, tool_name: str,
                tool_input: Mapping[str, Any]) -> str:
    """A short request id for buttons (fits Discord's 100-character custom ids).

    Stable for a re-sent request (same CLI id, same tool and input: same answer), different
    for anything else: a decision applies only to the input it was shown for. A request
    without an id never matches another.
    """
    cli_id = cli_request_id or f"anonymous-{uuid.uuid4().hex}"
    shown = input_digest({"tool": tool_name, "input": dict(tool_input)})
    key = f"{conversation_id}\x00{cli_id}\x00{shown}"
    return f"ap-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def _render_diffs(diffs: list[Any]) -> str | None:
    out: list[str] = []
    for preview in diffs:
        if not isinstance(preview, Mapping):
            continue
        name = str(preview.get("fileName") or "")
        if preview.get("mode") == "advanced":
            out += [f"--- {name}", f"+++ {name}"]
            for hunk in preview.get("hunks") or []:
                if not isinstance(hunk, Mapping):
                    continue
                out.append(f"@@ -{hunk.get('oldStart', 0)},{hunk.get('oldLines', 0)} "
                           f"+{hunk.get('newStart', 0)},{hunk.get('newLines', 0)} @@")
                sign = {"add": "+", "remove": "-"}
                for line in hunk.get("lines") or []:
                    if isinstance(line, Mapping):
                        mark = sign.get(str(line.get("type")), " ")
                        out.append(mark + str(line.get("content", "")))
        else:
            out.append(f"{name}: {preview.get('reason') or 'no preview'}")
    return "\n".join(out) if out else None


def summarize_input(
    tool_name: str, tool_input: Mapping[str, Any], diffs: list[Any] | None = None
) -> tuple[str, str | None]:
    """The whole tool input, readable, and the diff when the CLI sent one: never cut.

    What runs is the whole input, so the prompt must be able to show all of it: adapters
    show a preview where a platform message is too small and attach the rest as a file.
    Bash with only a command → the command; Write/Edit with a real diff → the path (the
    diff shows the change); anything else → the whole input as JSON.
    """
    diff = _render_diffs(diffs) if diffs else None
    command = tool_input.get("command")
    path = tool_input.get("file_path") or tool_input.get("notebook_path")
    extra = set(tool_input) - {"command", "description", "timeout"}
    if isinstance(command, str) and not extra:
        text = command
    elif (isinstance(path, str) and diff and "\n@@ " in diff and tool_name in EDIT_TOOLS
          and set(tool_input) <= {"file_path", "notebook_path", "content", "old_string",
                                  "new_string", "replace_all", "edits", "new_source"}):
        text = path
    else:
        text = json.dumps(dict(tool_input), ensure_ascii=False, default=str, sort_keys=True,
                          indent=1)
    # Shown as it runs: a bidi override or a zero-width character cannot disguise it.
    text, hidden = reveal(text)
    if diff is not None:
        diff, hidden_in_diff = reveal(diff)
        hidden = hidden or hidden_in_diff
    return (f"{WARNING}\n{text}" if hidden else text), diff


@dataclass(eq=False)
class _Waiting:
    """A prompt someone may click."""

    approval: Approval
    view: ApprovalView
    owner: TurnOwner
    ref: MessageRef | None = None
    proposal: RuleProposal | None = None
    access: AccessPolicy | None = None
    """Who may decide (the agent's approvers); None: the broker's."""
    done: anyio.Event = field(default_factory=anyio.Event)
    result: sdk.PermissionResult | None = None
    unshown: str | None = None
    """How it was resolved while the prompt was still being posted (no ``ref`` yet): shown
    once the post returns."""


async def _first_of(done: anyio.Event, signal: sdk.CancelSignal | None) -> None:
    """Wait for a decision, or for the request to be cancelled under us."""
    if signal is None:
        await done.wait()
        return
    async with anyio.create_task_group() as tg:

        async def cancelled() -> None:
            await signal.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(cancelled)
        await done.wait()
        tg.cancel_scope.cancel()


class ApprovalBroker:
    """Turns permission requests into prompts and clicks into decisions."""

    def __init__(
        self,
        store: Store,
        access: AccessPolicy,
        config: ApprovalsConfig,
        policy: ToolPolicy,
        adapter_for: Callable[[str], Adapter | None],
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.access = access
        self.config = config
        self.policy = policy
        self._adapter_for = adapter_for
        self._waiting: dict[str, _Waiting] = {}

    async def _decide(self, request_id: str, status: ApprovalStatus, by: str,
                      reason: str | None = None) -> bool:
        """The store's pending → decided transition, counted when it happens."""
        decided = await self.store.decide(request_id, status, by, reason)
        if decided and self.metrics is not None:
            self.metrics.approval_decided(status.value, by)
        return decided

    def pending(self) -> int:
        """Approval prompts waiting for a click now."""
        return len(self._waiting)

    def pending_in(self, scope: Scope) -> int:
        return sum(1 for w in self._waiting.values() if w.owner.scope == scope)

    # -- requests ----------------------------------------------------------------

    async def can_use_tool(
        self, owner: TurnOwner, request: CanUseToolRequest, *,
        policy: ToolPolicy | None = None, access: AccessPolicy | None = None,
    ) -> sdk.PermissionResult:
        """Answer one ``can_use_tool`` request of a turn (see the module doc).

        ``policy`` and ``access``: the serving agent's (default: the broker's)."""
        traced = tracing()
        with traced.tracer.start_as_current_span(
                "lettabot.approval",
                context=traced.parent_of_approval(owner.conversation_id, request.tool_call_id),
                attributes=attributes(tool=request.tool_name, scope=owner.scope.key,
                                      tool_call_id=request.tool_call_id)) as span:
            result = await self._can_use_tool(owner, request, policy=policy, access=access)
            span.set_attribute("lettabot.decision",
                               "allow" if isinstance(result, sdk.PermissionAllow) else "deny")
            if traced.enabled:  # who decided: a person, a rule, the policy, a timeout
                rid = request_key(owner.conversation_id,
                                  request.request_id or request.tool_call_id,
                                  request.tool_name, request.tool_input)
                approval = await self.store.get_approval(rid)
                if approval is not None and approval.decided_by:
                    by = approval.decided_by
                    adapter, colon, user = by.partition(":")
                    span.set_attributes(attributes(
                        status=approval.status.value,
                        decided_by=traced.user(adapter, user) if colon else by))
            return result

    async def _can_use_tool(
        self, owner: TurnOwner, request: CanUseToolRequest, *,
        policy: ToolPolicy | None, access: AccessPolicy | None,
    ) -> sdk.PermissionResult:
        policy = (policy or self.policy).for_scope(owner.scope)
        access = access or self.access
        tool = request.tool_name
        rid = request_key(owner.conversation_id, request.request_id or request.tool_call_id,
                          tool, request.tool_input)
        summary, diff = summarize_input(tool, request.tool_input, request.diffs)
        approval = await self.store.create_pending(
            rid, scope=owner.scope.key, conversation_id=owner.conversation_id, tool_name=tool,
            tool_input=request.tool_input, input_summary=summary, requested_by=owner.user_id,
        )
        if approval.status is not ApprovalStatus.PENDING:  # a re-sent request: same answer
            return self._result_of(approval)
        if (why := policy.blocked(tool)) is not None:
            await self._decide(rid, ApprovalStatus.DENIED, "policy", why)
            await self._note(owner.scope, f"🚫 {tool} was blocked: {why}.")
            return sdk.PermissionDeny(message=f"{why}; it was not run and cannot be approved.")
        guard = policy.guard_or_default()
        conversation = owner.conversation_id
        if (why := policy.forbidden(tool, request.tool_input, owner.agent_id,
                                    conversation)) is not None:
            await self._decide(rid, ApprovalStatus.DENIED, "policy", why)
            await self._note(owner.scope, f"🚫 {tool} was denied: {why}.")
            return sdk.PermissionDeny(message=f"Denied: {why}. It was not run and cannot be "
                                              "approved.")
        if owner.untrusted:  # tainted: only an approver's click, never mode, rule or self
            return await self._ask_tainted(owner, approval, summary, diff, tool,
                                           getattr(request, "signal", None), access)
        if (why := policy.auto_allow(tool, request.tool_input, owner.agent_id,
                                     conversation)) is not None:
            await self._decide(rid, ApprovalStatus.APPROVED, "policy", why)
            return self._allowed(guard, owner, tool, request.tool_input)
        if (rule := await self._matching_rule(owner, tool, request.tool_input, policy,
                                              access)) is not None:
            await self._decide(rid, ApprovalStatus.APPROVED, "rule",
                                    f"rule {rule.id} by {rule.created_by}: {rule.tool_name} "
                                    f"{rule.kind} {rule.pattern}"[:500])
            return self._allowed(guard, owner, tool, request.tool_input)
        if not access.config.approvers and not access.config.may_self_approve(
                owner.scope.adapter):
            why = "no access.approvers are configured, so nobody may approve it"
            await self._decide(rid, ApprovalStatus.DENIED, "policy", why)
            await self._note(owner.scope, f"🚫 {tool} needs an approver's click, but {why}.")
            return sdk.PermissionDeny(message=f"{tool} needs approval and {why}; it was not run.")
        proposal = propose(guard, tool, request.tool_input, conversation)
        result = await self._ask(owner, approval, summary, diff, proposal,
                                 getattr(request, "signal", None), access)
        if isinstance(result, sdk.PermissionAllow):
            return self._allowed(guard, owner, tool, request.tool_input)
        return result

    @staticmethod
    def _allowed(guard: ToolGuard, owner: TurnOwner, tool: str,
                 tool_input: Mapping[str, Any]) -> sdk.PermissionResult:
        """An allowed call; a ``SetWorkingDirectory`` may move the conversation, so the guard
        judges its later relative paths from there too."""
        if tool in CWD_TOOLS:
            guard.moved(owner.conversation_id, tool_input)
        return sdk.PermissionAllow()

    async def _ask_tainted(
        self, owner: TurnOwner, approval: Approval, summary: str, diff: str | None, tool: str,
        signal: sdk.CancelSignal | None, access: AccessPolicy,
    ) -> sdk.PermissionResult:
        """A call of a turn that carries untrusted content: the configured approvers decide
        (no "Always allow"); with none, it is denied at once."""
        if not access.config.approvers:
            why = ("this turn contains untrusted content (messages of people who may not "
                   "talk to the bot) and no access.approvers are configured")
            await self._decide(approval.request_id, ApprovalStatus.DENIED, "policy", why)
            await self._note(owner.scope, f"🚫 {tool} was not run: {why}. Ask again in a "
                                          "new message if it should run.")
            return sdk.PermissionDeny(message=f"{tool} was not run: {why}.")
        summary = f"{UNTRUSTED}\n{summary}"
        return await self._ask(owner, approval, summary, diff, None, signal, access)

    async def _matching_rule(self, owner: TurnOwner, tool: str, tool_input: Mapping[str, Any],
                             policy: ToolPolicy, access: AccessPolicy) -> AllowRule | None:
        """An unexpired rule of the scope covering this call, for a person who may talk."""
        if not access.may_talk(owner.scope.adapter, owner.user_id):
            return None
        guard = policy.guard_or_default()
        for rule in await self.store.list_allow_rules(owner.scope.key):
            if matches(guard, rule, tool, tool_input, owner.conversation_id):
                return rule
        return None

    async def _ask(
        self, owner: TurnOwner, approval: Approval, summary: str, diff: str | None,
        proposal: RuleProposal | None, signal: sdk.CancelSignal | None = None,
        access: AccessPolicy | None = None,
    ) -> sdk.PermissionResult:
        rid = approval.request_id
        timeout = self.config.timeout_seconds
        view = ApprovalView(
            request_id=rid, scope=owner.scope, tool_name=approval.tool_name,
            input_summary=summary, diff=diff, requested_by=owner.user_id,
            deciders=(access or self.access).deciders(owner.scope.adapter,
                                                      _asker(owner)),
            allow_always=self.config.always_allow_button and proposal is not None,
            always_covers=(None if proposal is None else
                           f"{proposal.covers}, here, for {self.config.rule_ttl_hours:g} h"
                           if proposal.makes_rule else proposal.covers),
            expires_at=approval.created_at + timedelta(seconds=timeout),
            untrusted=owner.untrusted,
        )
        waiting = _Waiting(approval, view, owner, proposal=proposal, access=access)
        self._waiting[rid] = waiting
        try:
            adapter = self._adapter_for(owner.scope.adapter)
            if adapter is None:
                raise RuntimeError(f"no adapter {owner.scope.adapter!r} to show the prompt")
            waiting.ref = await adapter.present_approval(view)
            if waiting.unshown is not None:  # decided while the prompt was being posted
                await self._resolve(waiting, waiting.unshown)
            await self.store.set_approval_message(rid, waiting.ref.id)
            with anyio.move_on_after(timeout):
                await _first_of(waiting.done, signal)
            if waiting.result is not None:
                return waiting.result
            if signal is not None and signal.cancelled:
                # The SDK will not deliver an answer: the CLI or its App Server is gone.
                why = "the agent's server stopped"
                if await self._decide(rid, ApprovalStatus.EXPIRED, "runtime", why):
                    await self._resolve(waiting, f"Cancelled: {why}")
                    return sdk.PermissionDeny(message=f"Cancelled: {why}.")
            why = f"Timed out: nobody decided within {timeout:g} s"
            if await self._decide(rid, ApprovalStatus.TIMED_OUT, "timeout", why):
                await self._resolve(waiting, "Timed out")
                return sdk.PermissionDeny(message=f"{why}; {approval.tool_name} was not run.")
            with anyio.move_on_after(5):  # a click won the race with the timeout
                await waiting.done.wait()
            if waiting.result is None:  # decided in the store by another replica
                await self.apply_decided(rid)
            if waiting.result is None:
                return sdk.PermissionDeny(message=f"{why}; {approval.tool_name} was not run.")
            return waiting.result
        finally:
            self._waiting.pop(rid, None)
            if waiting.result is None and not waiting.done.is_set():
                with anyio.CancelScope(shield=True):
                    await self._abandon(waiting)

    async def _abandon(self, waiting: _Waiting) -> None:
        """The turn ended (stopped, failed, shutting down) before a decision."""
        rid = waiting.approval.request_id
        try:
            if await self._decide(rid, ApprovalStatus.EXPIRED, "runtime",
                                       "the turn ended before a decision"):
                await self._resolve(waiting, "Cancelled: the turn ended before a decision")
        except Exception:
            log.warning("could not expire approval %s", rid, exc_info=True)

    async def cancel_scope(self, scope: Scope, reason: str) -> int:
        """Deny (and interrupt) the scope's open requests: its turn is being stopped."""
        cancelled = 0
        for waiting in [w for w in self._waiting.values() if w.owner.scope == scope]:
            rid = waiting.approval.request_id
            if await self._decide(rid, ApprovalStatus.EXPIRED, "runtime", reason):
                waiting.result = sdk.PermissionDeny(message=f"Cancelled: {reason}.",
                                                    interrupt=True)
                waiting.done.set()
                await self._resolve(waiting, f"Cancelled: {reason}")
                cancelled += 1
        return cancelled

    # -- clicks ------------------------------------------------------------------

    def waiting_here(self, request_id: str) -> bool:
        """Whether a turn of this process waits for ``request_id`` (else, in a cluster,
        another replica's may)."""
        return request_id in self._waiting

    @staticmethod
    def _not_pending(approval: Approval | None) -> DecisionOutcome | None:
        """Why a click on ``approval`` decides nothing, or None if it is pending."""
        if approval is None:
            return DecisionOutcome(
                status="unknown",
                message="This approval request is unknown (it may come from an older run of "
                        "the bot). Ask again if the tool should run.")
        if approval.status is ApprovalStatus.EXPIRED:
            return DecisionOutcome(
                status="unknown",
                message=f"This request expired ({approval.reason or 'no decision'}); nothing "
                        "will run. Ask again if the tool should run.")
        if approval.status is not ApprovalStatus.PENDING:
            return DecisionOutcome(status="already_decided",
                                   message=f"Already decided: {_outcome_text(approval)}.")
        return None

    async def decide(
        self, request_id: str, decision: ApprovalDecision, user_id: str, user_name: str = ""
    ) -> DecisionOutcome:
        """A click: authorise the clicker, then decide once (see the module doc)."""
        approval = await self.store.get_approval(request_id)
        if (refused := self._not_pending(approval)) is not None:
            return refused
        assert approval is not None
        waiting = self._waiting.get(request_id)
        if waiting is None:
            return DecisionOutcome(
                status="unknown",
                message="This request is no longer waiting for a decision (the bot restarted "
                        "or the turn ended). Ask again if the tool should run.")
        scope = waiting.owner.scope
        access = waiting.access or self.access
        requested_by = None if waiting.owner.untrusted else approval.requested_by
        if not access.may_approve(scope.adapter, user_id, requested_by):
            who = access.approvers_text(scope.adapter)
            return DecisionOutcome(status="not_authorized",
                                   message=f"Only {who} can decide this request.")
        name = user_name or user_id
        approve = decision in ("approve", "always")
        outcome = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        always = (decision == "always" and self.config.always_allow_button
                  and waiting.proposal is not None)
        covers = waiting.view.always_covers if always else None
        reason = f"always allow {covers}" if covers else None
        if not await self._decide(request_id, outcome, f"{scope.adapter}:{user_id}", reason):
            fresh = await self.store.get_approval(request_id)
            text = _outcome_text(fresh) if fresh else "unknown"
            return DecisionOutcome(status="already_decided", message=f"Already decided: {text}.")
        return await self._finish(waiting, approve, always, user_id, name)

    async def _finish(self, waiting: _Waiting, approve: bool, always: bool, user_id: str,
                      name: str) -> DecisionOutcome:
        """After the store's transition: the rule, the turn's answer, the prompt."""
        approval, scope = waiting.approval, waiting.owner.scope
        covers = waiting.view.always_covers if always else None
        if always and waiting.proposal is not None and waiting.proposal.makes_rule:
            rule = await self.store.add_allow_rule(
                scope.key, approval.tool_name, kind=waiting.proposal.kind,
                pattern=waiting.proposal.pattern, created_by=f"{scope.adapter}:{user_id}",
                ttl=timedelta(hours=self.config.rule_ttl_hours))
            log.info("allow rule %s added in %s by %s:%s (%s %s)", rule.id, scope.key,
                     scope.adapter, user_id, rule.tool_name, rule.kind)
        if approve:
            final = f"Approved by {name}"
            if always and waiting.proposal is not None and not waiting.proposal.makes_rule:
                final += " — this call only (it reaches outside the workspace: no rule)"
            elif always:
                final += f" — from now on {approval.tool_name}: {covers} (`rules` lists them)"
            waiting.result = sdk.PermissionAllow()
        else:
            final = f"Denied by {name}"
            waiting.result = sdk.PermissionDeny(
                message=f"Denied by {name}: {approval.tool_name} was not run.")
        waiting.done.set()
        await self._resolve(waiting, final)
        return DecisionOutcome(status="decided", message=final, final_text=final)

    # -- clicks on another replica (cluster) ----------------------------------------

    def holds(self, request_id: str) -> dict[str, Any] | None:
        """For the replica that got a click on a prompt waiting here: what it needs to
        record the decision (None: not waiting here)."""
        waiting = self._waiting.get(request_id)
        if waiting is None or waiting.done.is_set():
            return None
        offers = self.config.always_allow_button and waiting.proposal is not None
        return {"always_covers": waiting.view.always_covers if offers else None}

    async def record(
        self, request_id: str, decision: ApprovalDecision, user_id: str,
        access: AccessPolicy, always_covers: str | None = None,
    ) -> DecisionOutcome:
        """A click on a prompt another replica's turn waits for: authorise the clicker with
        the agent's ``access``, then decide once in the store. The waiting replica applies
        what the store says (:meth:`apply_decided`), never what a message claims."""
        approval = await self.store.get_approval(request_id)
        if (refused := self._not_pending(approval)) is not None:
            return refused
        assert approval is not None
        adapter = Scope.from_key(approval.scope).adapter
        if not access.may_approve(adapter, user_id, approval.requested_by):
            return DecisionOutcome(status="not_authorized",
                                   message=f"Only {access.approvers_text(adapter)} can decide "
                                           "this request.")
        approve = decision in ("approve", "always")
        always = decision == "always" and self.config.always_allow_button and always_covers
        outcome = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        reason = f"always allow {always_covers}" if always else None
        if not await self._decide(request_id, outcome, f"{adapter}:{user_id}", reason):
            fresh = await self.store.get_approval(request_id)
            text = _outcome_text(fresh) if fresh else "unknown"
            return DecisionOutcome(status="already_decided", message=f"Already decided: {text}.")
        return DecisionOutcome(status="decided",
                               message="Approved" if approve else "Denied")

    async def apply_decided(self, request_id: str, user_name: str = "") -> DecisionOutcome | None:
        """Another replica decided ``request_id`` in the store: answer the turn waiting here
        with the decision read back from the store. None: nothing waits here, or the store
        holds no click's decision for it (a forged or early message decides nothing). An
        approval by someone who may not approve (a row written around lettabot) is denied."""
        waiting = self._waiting.get(request_id)
        if waiting is None or waiting.done.is_set():
            return None
        approval = await self.store.get_approval(request_id)
        if approval is None or approval.status not in (ApprovalStatus.APPROVED,
                                                       ApprovalStatus.DENIED):
            return None
        scope = waiting.owner.scope
        adapter, _, user_id = (approval.decided_by or "").partition(":")
        if adapter != scope.adapter or not user_id:
            return None  # decided by the policy, a rule, a timeout: answered here already
        access = waiting.access or self.access
        authorised = access.may_approve(scope.adapter, user_id, approval.requested_by)
        if not authorised:
            log.warning("approval %s is marked %s by %s, who may not approve it: denied",
                        request_id, approval.status.value, approval.decided_by)
        approve = approval.status is ApprovalStatus.APPROVED and authorised
        always = (approve and self.config.always_allow_button
                  and (approval.reason or "").startswith("always allow "))
        return await self._finish(waiting, approve, always, user_id, user_name or user_id)

    # -- restart -------------------------------------------------------------------

    async def expire_stale(self) -> list[Approval]:
        """At startup: expire approvals a previous run left pending; returns them."""
        return await self.store.expire_pending(RESTART_REASON)

    async def resolve_stale(self, adapter: Adapter, stale: list[Approval]) -> None:
        """Update the prompts of expired approvals shown by ``adapter`` (best effort)."""
        for approval in stale:
            scope = Scope.from_key(approval.scope)
            if scope.adapter != adapter.name or not approval.message_ref:
                continue
            view = ApprovalView(request_id=approval.request_id, scope=scope,
                                tool_name=approval.tool_name, input_summary=approval.input_summary,
                                requested_by=approval.requested_by, allow_always=False)
            try:
                await adapter.resolve_approval(MessageRef(scope=scope, id=approval.message_ref),
                                               view, "Expired: lettabot restarted")
            except Exception:
                log.info("could not update the stale prompt %s", approval.request_id,
                         exc_info=True)

    # -- helpers -----------------------------------------------------------------------

    async def _resolve(self, waiting: _Waiting, text: str) -> None:
        adapter = self._adapter_for(waiting.owner.scope.adapter)
        if waiting.ref is None:
            waiting.unshown = text
            return
        if adapter is None:
            return
        try:
            with anyio.CancelScope(shield=True):
                await adapter.resolve_approval(waiting.ref, waiting.view, text)
        except Exception:
            log.warning("could not update approval prompt %s", waiting.view.request_id,
                        exc_info=True)

    async def _note(self, scope: Scope, text: str) -> None:
        adapter = self._adapter_for(scope.adapter)
        if adapter is None:
            return
        try:
            await adapter.notify(scope, text)
        except Exception:
            log.warning("could not post a note in %s", scope.key, exc_info=True)

    @staticmethod
    def _result_of(approval: Approval) -> sdk.PermissionResult:
        if approval.status is ApprovalStatus.APPROVED:
            return sdk.PermissionAllow()
        return sdk.PermissionDeny(message=f"{approval.tool_name} was not run: "
                                          f"{_outcome_text(approval)}.")


def _asker(owner: TurnOwner) -> str | None:
    """Who may self-approve (where that is on): never the asker of a tainted turn."""
    return None if owner.untrusted else owner.user_id


def _outcome_text(approval: Approval) -> str:
    status = approval.status
    if status is ApprovalStatus.APPROVED:
        return f"approved by {approval.decided_by}"
    if status is ApprovalStatus.DENIED:
        return f"denied by {approval.decided_by}"
    if status is ApprovalStatus.TIMED_OUT:
        return "timed out"
    if status is ApprovalStatus.EXPIRED:
        return f"expired ({approval.reason or 'no decision'})"
    return str(status)
