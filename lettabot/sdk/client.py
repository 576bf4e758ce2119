"""``LettaClient``: sessions on App Servers the client owns, instead of process-wide ones.

    async with sdk.LettaClient(servers=2, model="openai/gpt-4.1") as client:
        agent = await client.create_agent(persona="...")
        async with client.create_session(agent) as session:
            print((await session.run_turn("hi")).result)
        print(client.servers())          # url, pid, alive, sessions of each server

The client starts its local App Servers lazily (``servers`` of them) and uses the remote ones
it is given (``urls``: a URL, or ``(url, token)``); every session is pinned to one of them:
``server=`` picks it, else a resumed conversation goes to ``server_for(conversation_id)`` (a
stable hash) and a new one to the next server in turn. Named ``hosts`` (``{name: (url,
token)}``) are remote servers outside that spread: a session goes to one only when asked
(``server=client.host_server(name)``), for agents that live on that host's local backend.
``close()`` stops the servers it started once their sessions have closed. Keyword defaults
(``model``, ``cwd``, ``permission_mode``, ``env``, ...) apply to every session and agent the
client makes; per-call options win.

The module-level ``create_session`` & co. run on :func:`default_client`: its sessions use
process-wide App Servers, one per environment (``env``, ``cli_path``, ``HOME``...), started on
first use and shared by every session with that environment.
"""

from __future__ import annotations

import hashlib
import itertools
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, SecretStr

from lettabot.sdk._internal import client as internal
from lettabot.sdk._internal.client import (
    Factory,
    available_transports,
    get_default_transport,
    set_default_transport,
)
from lettabot.sdk.options import SessionOptions
from lettabot.sdk.session import Session
from lettabot.sdk.types import (
    ConversationInfo,
    ModelInfo,
    ProviderInfo,
    ResultMessage,
    UserContent,
)

__all__ = [
    "LettaClient",
    "ServerInfo",
    "archive_conversation",
    "available_transports",
    "connect_provider",
    "create_agent",
    "create_session",
    "default_client",
    "fork_conversation",
    "get_default_transport",
    "list_conversations",
    "list_models",
    "list_providers",
    "prompt",
    "resume_session",
    "set_default_transport",
]

_names = itertools.count(1)
T = TypeVar("T")


class ServerInfo(BaseModel):
    """One of a client's App Servers, as :meth:`LettaClient.servers` reports it."""

    index: int
    remote: bool
    host: str | None = None
    """The host's name, for a named host (outside the conversation spread)."""
    url: str | None = None
    pid: int | None = None
    """Local servers only, once started."""
    alive: bool = False
    """A local server's process runs (a remote server counts as alive)."""
    connected: bool = False
    restarts: int = 0
    sessions: int = 0
    """Sessions of this client open on it now."""


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class LettaClient:
    """Sessions on App Servers this client owns (see the module doc)."""

    def __init__(
        self,
        *,
        servers: int | None = None,
        urls: Sequence[str | tuple[str, str | SecretStr | None]] = (),
        hosts: Mapping[str, str | tuple[str, str | SecretStr | None]] | None = None,
        _shared: bool = False,
        **defaults: Any,
    ) -> None:
        self.defaults = dict(defaults)
        self._shared = _shared
        options = SessionOptions.model_validate(self.defaults)  # fails early on bad defaults
        remote = [_url_token(u) for u in urls]
        named = {name: _url_token(u) for name, u in (hosts or {}).items()}
        local = servers if servers is not None else (0 if remote or named else 1)
        if local < 0 or local + len(remote) + len(named) == 0:
            raise ValueError("a LettaClient needs at least one App Server (servers, urls or "
                             "hosts)")
        self._options = options
        self._set: Any = None
        if options.transport != "subprocess" and not _shared:
            from lettabot.sdk._internal.app_server.pool import ServerSet
            from lettabot.sdk._internal.cli import cli_env

            self._set = ServerSet(f"client-{next(_names)}", local=local,
                                  remote=[*remote, *named.values()],
                                  cli=options.cli_path, env=cli_env(options.env),
                                  cwd=options.cwd or Path.cwd(), pool=len(remote))
        self._count = local + len(remote)
        """The servers conversations are spread over (hosts are not)."""
        self._hosts = {name: self._count + i for i, name in enumerate(named)}
        self._total = self._count + len(named)
        self._next = 0
        self._open: dict[int, weakref.WeakSet[Session]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """``close()`` was called: the client makes no more sessions."""
        return self._closed

    # -- servers ---------------------------------------------------------------------

    def server_for(self, conversation_id: str) -> int:
        """The server a conversation is reopened on (stable across runs; never a host)."""
        if self._count == 0:
            raise ValueError("this client has only named hosts: pass server=host_server(name)")
        return _stable_hash(conversation_id) % self._count

    def host_server(self, name: str) -> int:
        """The server index of the named host ``name``."""
        try:
            return self._hosts[name]
        except KeyError:
            raise ValueError(f"this client has no host named {name!r}") from None

    @property
    def pool_size(self) -> int:
        """How many servers conversations without a host are spread over."""
        return self._count

    def servers(self) -> list[ServerInfo]:
        """Each server: where it is, whether it runs, how many of our sessions use it."""
        if self._shared:
            sessions = sum(1 for s in self._open.get(0, ()) if not s.closed)
            return [ServerInfo(index=0, remote=False, sessions=sessions)]
        names = {index: name for name, index in self._hosts.items()}
        if self._set is None:
            return [ServerInfo(index=i, remote=i in names, host=names.get(i))
                    for i in range(self._total)]
        out = []
        for index, state in enumerate(self._set.states()):
            sessions = sum(1 for s in self._open.get(index, ()) if not s.closed)
            out.append(ServerInfo.model_validate({**state, "sessions": sessions,
                                                  "host": names.get(index)}))
        return out

    def _pick(self, server: int | None, conversation_id: str | None) -> int:
        if server is not None:
            if not 0 <= server < self._total:
                raise ValueError(f"server {server} does not exist (this client has "
                                 f"{self._total})")
            return server
        if conversation_id is not None:
            return self.server_for(conversation_id)
        if self._count == 0:
            raise ValueError("this client has only named hosts: pass server=host_server(name)")
        index = self._next % self._count
        self._next += 1
        return index

    def _factory(self, index: int) -> Factory:
        """Transports on server ``index`` (sessions whose options name another server, or
        another environment, than the client's use the process-wide one for those)."""
        server_set, own_env = self._set, self._options.env

        def factory(options: SessionOptions, target: Any, session: Session) -> Any:
            self._open.setdefault(index, weakref.WeakSet()).add(session)
            if server_set is None or options.app_server_url or options.env != own_env:
                return internal.transport_for(options, target, session)
            return internal.transport_for(options, target, session,
                                          lambda: server_set.lease(index))

        return factory

    def _merged(self, options: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise RuntimeError("this LettaClient is closed")
        return {**self.defaults, **options}

    # -- the SDK's calls -------------------------------------------------------------------

    async def create_agent(self, *, server: int | None = None, **options: Any) -> str:
        """Create an agent (see :func:`lettabot.sdk.create_agent`: a model the server
        offers, by default the first it lists); return its id."""
        return await internal.create_agent(self._merged(options),
                                           self._factory(self._pick(server, None)))

    def create_session(self, agent_id: str | None = None, *, server: int | None = None,
                       **options: Any) -> Session:
        """A NEW conversation (see :func:`lettabot.sdk.create_session`)."""
        return internal.create_session(agent_id, self._merged(options),
                               self._factory(self._pick(server, None)))

    def resume_session(self, id: str, *, server: int | None = None, **options: Any) -> Session:
        """An agent's default conversation or a given one (see
        :func:`lettabot.sdk.resume_session`), on ``server_for(id)`` unless ``server``."""
        return internal.resume_session(id, self._merged(options),
                                       self._factory(self._pick(server, id)))

    async def check_server(self, server: int, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Connect to server ``server`` now (a local one is started if it is not running);
        raises :class:`~lettabot.sdk.AppServerUnreachableError` if it does not answer."""
        if self._set is None:
            return
        lease = self._set.lease(self._pick(server, None))
        try:
            await lease.connection(timeout)
        finally:
            await lease.release()

    async def list_models(self, *, server: int = 0) -> list[ModelInfo]:
        """The models server ``server`` can use."""
        options = SessionOptions.model_validate(self._merged({}))
        lease = self._set.lease(server) if self._set is not None else None
        return await internal.list_models(options, lease)

    # -- conversations ---------------------------------------------------------------------

    async def _manage(self, server: int | None, conversation_id: str | None,
                      call: Callable[[Any, float], Awaitable[T]]) -> T:
        from lettabot.sdk._internal.app_server.models import on_server

        options = SessionOptions.model_validate(self._merged({}))
        index = self._pick(server, conversation_id) if conversation_id else (server or 0)
        lease = self._set.lease(index) if self._set is not None else None
        return await on_server(options, lambda conn: call(conn, options.request_timeout), lease)

    async def fork_conversation(self, conversation_id: str, *, hidden: bool = False,
                                server: int | None = None) -> str:
        """A new conversation holding a copy of ``conversation_id``'s messages so far (an
        agent id: its default conversation); returns the new id, for ``resume_session``."""
        from lettabot.sdk._internal.app_server.conversations import fork_on

        wire, agent = _wire_conversation(conversation_id)
        return await self._manage(server, conversation_id, lambda conn, t: fork_on(
            conn, wire, agent_id=agent, hidden=hidden, timeout=t))

    async def archive_conversation(self, conversation_id: str, *, archived: bool = True,
                                   server: int | None = None) -> ConversationInfo:
        """Archive a conversation (``archived=False``: unarchive). It stays resumable;
        :meth:`list_conversations` leaves it out unless asked."""
        from lettabot.sdk._internal.app_server.conversations import update_on

        wire, _ = _wire_conversation(conversation_id)
        return await self._manage(server, conversation_id, lambda conn, t: update_on(
            conn, wire, {"archived": archived}, t))

    async def list_conversations(self, agent_id: str, *, include_archived: bool = False,
                                 limit: int = 50, server: int = 0) -> list[ConversationInfo]:
        """The agent's conversations (not its default one), most recently used first."""
        from lettabot.sdk._internal.app_server.conversations import list_on

        return await self._manage(server, None, lambda conn, t: list_on(
            conn, agent_id, limit=limit, include_archived=include_archived, timeout=t))

    # -- model providers (local backend) -------------------------------------------------

    async def list_providers(self, *, server: int = 0) -> list[ProviderInfo]:
        """The model providers the CLI can connect, and which are (local backend)."""
        from lettabot.sdk._internal.app_server.providers import list_providers_on

        return await self._manage(server, None, lambda conn, t: list_providers_on(conn, t))

    async def connect_provider(
        self, provider_id: str, *, api_key: str | None = None, base_url: str | None = None,
        name: str | None = None, auth_method: str | None = None,
        fields: dict[str, str] | None = None, server: int = 0,
    ) -> list[ProviderInfo]:
        """Connect (or update) a model provider, as ``letta connect`` does, over the
        server's socket: the key is never in a process's arguments. Connecting again with
        the same settings changes nothing. Returns every provider, as ``list_providers``."""
        from lettabot.sdk._internal.app_server.providers import connect_provider_on

        wire = dict(fields or {})
        if api_key:
            wire["apiKey"] = api_key
        if base_url:
            wire["baseUrl"] = base_url
        return await self._manage(server, None, lambda conn, t: connect_provider_on(
            conn, provider_id, wire, name=name, auth_method=auth_method, timeout=t))

    async def list_conversation_messages(
        self, conversation_id: str, *, limit: int = 50,
        order: Literal["asc", "desc"] = "desc", before: str | None = None,
        server: int | None = None,
    ) -> list[dict[str, Any]]:
        """A conversation's stored messages as raw Letta message dicts, without opening a
        session on it (newest first by default; page back with ``before=<oldest id>``)."""
        from lettabot.sdk._internal.app_server.conversations import messages_on

        wire, agent = _wire_conversation(conversation_id)
        query: dict[str, Any] = {"limit": limit, "order": order}
        if before:
            query["before"] = before
        if agent:
            query["agent_id"] = agent
        return await self._manage(server, conversation_id, lambda conn, t: messages_on(
            conn, wire, query, t))

    async def prompt(self, message: UserContent, agent_id: str | None = None,
                     **options: Any) -> ResultMessage:
        """One message, one answer, in a new conversation."""
        async with self.create_session(agent_id, **options) as session:
            return await session.run_turn(message)

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every open session of this client, then stop the servers it started.
        (The default client's process-wide servers stop an idle period after their last
        session, see ``app_server_idle``; closing it stops the idle ones at once.)"""
        self._closed = True
        for sessions in self._open.values():
            for session in list(sessions):
                await session.close()
        self._open.clear()
        if self._set is not None:
            await self._set.close()
        if self._shared:  # the process-wide servers kept idle for the next session
            import anyio

            from lettabot.sdk._internal.app_server.pool import stop_idle

            await anyio.to_thread.run_sync(stop_idle)

    async def __aenter__(self) -> LettaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _url_token(spec: str | tuple[str, str | SecretStr | None]) -> tuple[str, str | None]:
    if isinstance(spec, str):
        return spec, None
    url, token = spec
    return url, token.get_secret_value() if isinstance(token, SecretStr) else token


def _wire_conversation(conversation_id: str) -> tuple[str, str | None]:
    """The CLI's name for a conversation: an agent id names its ``default`` one."""
    from lettabot.sdk._internal.cli import is_agent_id

    if is_agent_id(conversation_id):
        return "default", conversation_id
    return conversation_id, None


_default: LettaClient | None = None


def default_client() -> LettaClient:
    """The client the module-level functions use (see the module doc)."""
    global _default
    if _default is None or _default.closed:
        _default = LettaClient(servers=1, _shared=True)
    return _default


async def create_agent(**options: Any) -> str:
    """Create an agent (model, system prompt, memory, persona/human/project); return its id.

    ``model`` must be a handle :func:`list_models` lists; without one the agent gets the
    FIRST model it lists. Otherwise (or when the CLI offers none) it raises
    :class:`~lettabot.sdk.UnknownModelError`, naming the models offered, and makes no agent.
    The same holds wherever a session makes a new agent (``create_session()`` with agent
    settings, or in a folder with no last-used agent).
    """
    return await default_client().create_agent(**options)


def create_session(agent_id: str | None = None, **options: Any) -> Session:
    """A NEW conversation: on ``agent_id``, else on the folder's last-used agent.

    Without an agent id, agent settings (``system_prompt``, ``memory``, ``persona``, ...)
    create a new agent for the session.
    """
    return default_client().create_session(agent_id, **options)


def resume_session(id: str, **options: Any) -> Session:
    """An agent's default conversation (agent id), or a given conversation (conversation id)."""
    return default_client().resume_session(id, **options)


async def prompt(message: UserContent, agent_id: str | None = None,
                 **options: Any) -> ResultMessage:
    """One message, one answer, in a new conversation (on ``agent_id`` or the last-used agent)."""
    return await default_client().prompt(message, agent_id, **options)


async def list_models(**options: Any) -> list[ModelInfo]:
    """The models the CLI can use with this environment (``cli_path``, ``env``, ...)."""
    return await internal.list_models(SessionOptions.model_validate(options), None)


async def fork_conversation(conversation_id: str, *, hidden: bool = False,
                            **options: Any) -> str:
    """See :meth:`LettaClient.fork_conversation` (``options``: ``env``, ``cli_path``...)."""
    return await LettaClient(_shared=True, **options).fork_conversation(conversation_id,
                                                                      hidden=hidden)


async def archive_conversation(conversation_id: str, *, archived: bool = True,
                               **options: Any) -> ConversationInfo:
    """See :meth:`LettaClient.archive_conversation`."""
    return await LettaClient(_shared=True, **options).archive_conversation(
        conversation_id, archived=archived)


async def list_conversations(agent_id: str, *, include_archived: bool = False,
                             limit: int = 50, **options: Any) -> list[ConversationInfo]:
    """See :meth:`LettaClient.list_conversations`."""
    return await LettaClient(_shared=True, **options).list_conversations(
        agent_id, include_archived=include_archived, limit=limit)


async def list_providers(**options: Any) -> list[ProviderInfo]:
    """See :meth:`LettaClient.list_providers` (``options``: ``env``, ``cli_path``...)."""
    return await LettaClient(_shared=True, **options).list_providers()


async def connect_provider(provider_id: str, *, api_key: str | None = None,
                           base_url: str | None = None, name: str | None = None,
                           auth_method: str | None = None,
                           fields: dict[str, str] | None = None,
                           **options: Any) -> list[ProviderInfo]:
    """See :meth:`LettaClient.connect_provider`."""
    return await LettaClient(_shared=True, **options).connect_provider(
        provider_id, api_key=api_key, base_url=base_url, name=name, auth_method=auth_method,
        fields=fields)
