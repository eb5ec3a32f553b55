"""`PlatformRecorder`: one test's own local platform, its clients, and what it recorded."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tracengent import AsyncTracengentClient, TracengentClient, TracengentOptions
from tracengent.platform import (
    Approval,
    Platform,
    Store,
    render_approvals,
    use_embedded_platform,
)
from tracengent.platform._policy import AgentPolicy

from ._checks import _Checks
from ._platform import PolicySource, resolve_policy


def _close_async(client: AsyncTracengentClient) -> None:
    """`await client.close()` from sync code, whether or not this thread has an event loop.

    A loop of its own in a worker thread: teardown may run where a loop is current (pytest-asyncio)
    or none is, and must not disturb the test's loop either way.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="tracengent-testing") as pool:
        pool.submit(asyncio.run, client.close()).result()


class PlatformRecorder(_Checks):
    """A fresh in-memory local platform for one test, and helpers to read and assert on it.

    While installed (a `with` block, or the `tracengent_platform` fixture), it is the process-wide
    embedded platform: every client built with `TracengentOptions.local()` talks to it, the
    agent's own clients included. Reads flush those clients first, so a test never calls flush.
    Not for concurrent tests in one process: there is one embedded platform per process.
    """

    def __init__(self, policy: PolicySource = None, *, base_dir: Path | None = None) -> None:
        """`policy`: None (the built-in one), TOML text, a file path (relative to `base_dir`), or
        a `Policy`. Raises `PolicyError` listing every problem of a policy that cannot be used."""
        super().__init__(Platform(resolve_policy(policy, base_dir), Store()))
        self._previous: Platform | None = None
        self._installed = False
        self._clients: list[TracengentClient | AsyncTracengentClient] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def install(self) -> PlatformRecorder:
        """Make this the process-wide embedded platform, remembering the one it replaces."""
        if not self._installed:
            self._previous = use_embedded_platform(self.platform)
            self._installed = True
        return self

    def close(self) -> None:
        """Close the clients made here, put the previous embedded platform back, free the store."""
        clients, self._clients = self._clients, []
        for client in reversed(clients):
            if isinstance(client, AsyncTracengentClient):
                _close_async(client)
            else:
                client.close()
        self.flush()  # clients the agent made itself: deliver before the store goes
        if self._installed:
            use_embedded_platform(self._previous)
            self._installed = False
        self.store.close()

    def __enter__(self) -> PlatformRecorder:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- clients ---------------------------------------------------------------------------------

    def options(self, agent_id: str | None = None, **overrides: object) -> TracengentOptions:
        """`TracengentOptions.local()` signed in as a policy agent, with its credentials.

        None: the policy's first enabled agent with client credentials (else an ingest key);
        the built-in policy's `demo-agent`.
        """
        agent = self._agent(agent_id)
        credentials = {
            "client_id": agent.client_id,
            "client_secret": agent.client_secret,
            "ingest_key": agent.ingest_key,
        }
        return TracengentOptions.local(agent.agent_id, **{**credentials, **overrides})

    def client(self, agent_id: str | None = None, **overrides: object) -> TracengentClient:
        """A client of this platform (see `options`), closed when the recorder closes."""
        client = TracengentClient(self.options(agent_id, **overrides))
        self._clients.append(client)
        return client

    def async_client(
        self, agent_id: str | None = None, **overrides: object
    ) -> AsyncTracengentClient:
        """An asyncio client of this platform, closed when the recorder closes.

        Built without a running loop (it needs none until used), so it can come from a plain
        fixture and serve a test under pytest-asyncio or anyio alike.
        """
        client = AsyncTracengentClient(self.options(agent_id, **overrides))
        self._clients.append(client)
        return client

    def _agent(self, agent_id: str | None) -> AgentPolicy:
        agents = self.policy.agents
        if agent_id is not None:
            found = self.policy.agent(agent_id)
            if found is None:
                known = ", ".join(agent.agent_id for agent in agents)
                raise ValueError(f"no agent {agent_id!r} in the policy; it has: {known}")
            return found
        enabled = [agent for agent in agents if not agent.disabled]
        with_secret = [agent for agent in enabled if agent.client_id and agent.client_secret]
        usable = with_secret or [agent for agent in enabled if agent.ingest_key]
        if not usable:
            raise ValueError("the policy has no enabled agent with credentials to sign in with")
        return usable[0]

    # --- approvals -------------------------------------------------------------------------------

    def approve(self, approval_id: str | None = None) -> Approval:
        """Approve as a person would; None: the one pending approval (it fails unless exactly one).

        The waiting agent (`ensure_authorized`, `wait_for_approval`) sees it on its next poll.
        """
        __tracebackhide__ = True
        return self._decide(approval_id, approved=True)

    def deny(self, approval_id: str | None = None) -> Approval:
        """Deny as a person would; None: the one pending approval."""
        __tracebackhide__ = True
        return self._decide(approval_id, approved=False)

    def _decide(self, approval_id: str | None, *, approved: bool) -> Approval:
        __tracebackhide__ = True
        verb = "approve" if approved else "deny"
        if approval_id is None:
            pending = self.approvals("pending")
            if len(pending) != 1:
                raise AssertionError(
                    f"{verb}() without an id needs exactly one pending approval, found "
                    f"{len(pending)}:\n{render_approvals(self.approvals())}"
                )
            approval_id = pending[0].approval_id
        try:
            return self.store.decide_approval(approval_id, approved)
        except KeyError:
            problem = f"cannot {verb} {approval_id!r}: no such approval"
        except ValueError as error:
            problem = f"cannot {verb}: {error}"
        raise AssertionError(f"{problem}\n{render_approvals(self.approvals())}")
