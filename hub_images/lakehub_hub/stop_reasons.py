"""Why a user's server stopped: the reason kept in the spawner's state and the sentence on the hub page.

Every stop of a server is classified into one of REASONS and counted in
``lakehub_servers_stopped_total{reason}`` (lakehub_hub.hub_metrics). A stop the user did not ask
for is kept in the spawner's state (``last_stop_reason``, ``last_stop`` = the sentence the hub's
home page shows, ``last_stop_at``) across the hub's restarts, until the user's next start; the
user's own stop clears it.

========================= ===============================================================================
cull                      the hub's idle culler stopped it. Known from the request, not from timestamps:
                          the culler stops a server with the same REST call a user does (DELETE
                          /hub/api/users/<name>/server), so ``install_stop_hooks`` wraps JupyterHub's
                          ``BaseHandler.stop_single_user`` and marks the stop ``cull`` when the request's
                          owner is the idle-culler *service* (its API token; neither a user nor an
                          admin can make a request as that service).
oom                       ECS says the server container was killed for using more memory than its task
                          has: container ``reason`` "OutOfMemoryError: Container killed due to memory
                          usage", exit code 137 (docs/AWS_NOTES.md; the local agent reports the same).
spot                      Fargate Spot took the capacity back (stopCode SpotInterruption).
scheduled                 the server ended itself (LAKEHUB_SERVER_IDLE_TIMEOUT, exit code 0) while no hub
                          ran: the hub process finds, at its start, a task that stopped before it
                          started, or a task ECS no longer knows (ECS forgets stopped tasks after about an
                          hour). The tier's off-hours schedule scales the hub to 0 at night; a
                          replacement (deployment) is the other case, and the sentence names both.
image-update              stopped by ``POST /hub/api/lakehub/drain`` (admin:servers), which stops the
                          servers whose task runs another image than the tier's task definition now
                          names, so that their next start gets the new image.
user                      the user (or an admin) stopped it: nothing is shown.
other                     any other stop; the sentence quotes the reason ECS (or the process) gave.
========================= ===============================================================================
"""

from __future__ import annotations

import datetime
import functools
import json
import os

from traitlets import HasTraits, Unicode

REASONS = ("cull", "oom", "spot", "scheduled", "image-update", "user", "other")

# What ECS reports on the container the kernel's OOM killer ended (DescribeTasks containers[].reason
# and exitCode; "Troubleshooting Amazon ECS OutOfMemoryError errors", ECS developer guide).
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
OOM_EXIT_CODE = 137
SPOT_INTERRUPTION = "SpotInterruption"

CULLER_SERVICE = "idle-culler"
KEPT = "Files in your home and notebooks you saved are kept"

# When this hub process started: a task that stopped before it stopped while no hub was running.
HUB_STARTED_AT = datetime.datetime.now(datetime.UTC)


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def idle_timeout() -> int:
    """The tier's idle timeout in seconds (the hub's LAKEHUB_IDLE_TIMEOUT; 3600 by default)."""
    raw = (os.environ.get("LAKEHUB_IDLE_TIMEOUT") or os.environ.get("LAKEHUB_SERVER_IDLE_TIMEOUT") or "").strip()
    return int(raw) if raw.isdigit() else 3600


def explain(reason: str, size: str = "", detail: str = "") -> str:
    """One plain sentence (or two) for the user: what happened, what was kept, what to do."""
    if reason == "cull":
        return (
            f"The hub stopped your server after {_minutes(idle_timeout())} without activity (idle servers are "
            f"stopped to save cost). {KEPT}; start your server again to continue."
        )
    if reason == "oom":
        used = f" ({size})" if size else ""
        return (
            f"Your server ran out of memory: it needed more than its size{used} has, and was stopped. "
            f"{KEPT}; what was only in memory (variables, unsaved changes) is lost. Start it again with a "
            "bigger size, or use less memory (for example read data in chunks)."
        )
    if reason == "spot":
        return f"AWS reclaimed the Fargate Spot capacity your server ran on (Spot interruption). {KEPT}; start your server again."
    if reason == "scheduled":
        return (
            f"Your server stopped itself after {_minutes(idle_timeout())} without activity while the hub was "
            "away (the tier's off-hours stop, or maintenance). "
            f"{KEPT}; start your server again."
        )
    if reason == "image-update":
        return (
            "Your server was stopped so that its next start runs the tier's updated software image. "
            f"{KEPT}; start your server again to use the new version."
        )
    why = detail.strip().rstrip(".") or "no reason given"
    return (
        f"Your server stopped unexpectedly ({why}). {KEPT}; start your server again, and tell the platform "
        "admins if it keeps happening."
    )


def server_container(task: dict, container_name: str) -> dict:
    for container in task.get("containers") or []:
        if container.get("name") == container_name:
            return container
    return {}


def _as_datetime(value) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return None


def classify_task(task: dict, container_name: str, hub_started_at: datetime.datetime | None = None) -> tuple[str, str]:
    """(reason, detail) for a STOPPED (or stopping) ECS task the hub did not stop."""
    reason_text = (task.get("stoppedReason") or "").strip()
    if task.get("stopCode") == SPOT_INTERRUPTION or "spot task was interrupted" in reason_text.lower():
        return "spot", reason_text
    container = server_container(task, container_name)
    container_reason = (container.get("reason") or "").strip()
    exit_code = container.get("exitCode")
    if container_reason.startswith("OutOfMemoryError"):
        return "oom", container_reason
    started = hub_started_at or HUB_STARTED_AT
    stopped = _as_datetime(task.get("stoppedAt")) or _as_datetime(task.get("stoppingAt"))
    if exit_code == 0 and stopped is not None and stopped < started:
        return "scheduled", reason_text
    detail = "; ".join(
        filter(None, [reason_text, container_reason, f"exit code {exit_code}" if exit_code not in (None, 0) else ""])
    )
    return "other", detail


def count(reason: str) -> None:
    try:
        from lakehub_hub.hub_metrics import count_server_stopped
    except ImportError:  # prometheus_client is JupyterHub's; absent only outside a hub
        return
    count_server_stopped(reason)


class StopReasonState(HasTraits):
    """Spawner mixin: the last stop's reason and sentence, kept in the spawner's state."""

    last_stop = Unicode("", help="What the user is told about the last stop they did not ask for.")
    last_stop_at = Unicode("", help="When it stopped (ISO 8601, UTC).")
    last_stop_reason = Unicode("", help="Why: one of lakehub_hub.stop_reasons.REASONS (not 'user').")

    _requested_stop_reason = ""  # set by the culler hook or the drain before they stop the server

    def get_state(self):
        state = super().get_state()
        if self.last_stop:
            state["last_stop"] = self.last_stop
            state["last_stop_at"] = self.last_stop_at
            state["last_stop_reason"] = self.last_stop_reason or "other"
        return state

    def load_state(self, state):
        super().load_state(state)
        self.last_stop = state.get("last_stop", "")
        self.last_stop_at = state.get("last_stop_at", "")
        self.last_stop_reason = state.get("last_stop_reason", "other" if self.last_stop else "")

    def stop_size(self) -> str:
        """The server's size in words, for the out-of-memory sentence ("" when unknown)."""
        return ""

    def forget_stop(self) -> None:
        self.last_stop = self.last_stop_at = self.last_stop_reason = ""

    def record_stop(self, reason: str, detail: str = "", at: str = "") -> None:
        """Keep (and count) a stop the user did not ask for; a 'user' stop clears the message."""
        count(reason)
        if reason == "user":
            self.forget_stop()
            return
        self.last_stop_reason = reason
        self.last_stop = explain(reason, size=self.stop_size(), detail=detail)
        self.last_stop_at = at or now_iso()
        log = getattr(self, "log", None)
        if log is not None:
            log.info("%s stopped (%s): %s", getattr(self, "_log_name", "server"), reason, detail or self.last_stop)

    def take_requested_stop_reason(self) -> str:
        """In stop(): why the hub is stopping it now ('user' unless the culler or the drain asked)."""
        reason = self._requested_stop_reason or "user"
        self._requested_stop_reason = ""
        return reason


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def mark_stop(spawner, reason: str) -> None:
    """Tell `spawner` why the hub is about to stop it (read by its stop())."""
    if reason not in REASONS:
        raise ValueError(f"unknown stop reason {reason!r}")
    spawner._requested_stop_reason = reason


# --------------------------------------------------------------------------------------------
# Hub hooks: the culler's stops, and the drain API
# --------------------------------------------------------------------------------------------


def install_stop_hooks(culler_service: str = CULLER_SERVICE) -> None:
    """Mark every stop the idle-culler service requests as 'cull' (idempotent).

    JupyterHub stops a server for a REST request in BaseHandler.stop_single_user, whoever asked;
    the wrapper looks at the request's owner (self.current_user: a User, or a Service for a
    service's token) before it calls the original."""
    from jupyterhub.handlers.base import BaseHandler

    original = BaseHandler.stop_single_user
    if getattr(original, "_lakehub_stop_hook", False):
        return

    @functools.wraps(original)
    async def stop_single_user(self, user, server_name=""):
        owner = self.current_user
        spawner = user.spawners.get(server_name) if hasattr(user, "spawners") else None
        if spawner is not None and getattr(owner, "kind", "") == "service" and getattr(owner, "name", "") == culler_service:
            spawner._requested_stop_reason = "cull"
        return await original(self, user, server_name)

    stop_single_user._lakehub_stop_hook = True
    BaseHandler.stop_single_user = stop_single_user


def drain_handler():
    """The handler class for POST /hub/api/lakehub/drain (built lazily: JupyterHub imports)."""
    from jupyterhub import orm
    from jupyterhub.apihandlers.base import APIHandler
    from jupyterhub.scopes import needs_scope

    class DrainAPIHandler(APIHandler):
        """Stop every running server whose task runs another image than the tier's current one.

        Admin only (scope admin:servers). Each stop is recorded as 'image-update', so the user's
        home page says why, and the next start runs the new image. A spawner that cannot tell
        (no `runs_current_image`, shared mode) is left alone. Answers
        {"stopped": ["user/server", ...], "current": N, "unknown": N}."""

        @needs_scope("admin:servers")
        async def post(self):
            stopped, current, unknown = [], 0, 0
            for orm_user in self.db.query(orm.User):
                user = self.users[orm_user]
                for name, spawner in list(user.spawners.items()):
                    if not spawner.active or spawner.pending:
                        continue
                    check = getattr(spawner, "runs_current_image", None)
                    verdict = await check() if check else None
                    if verdict is None:
                        unknown += 1
                    elif verdict:
                        current += 1
                    else:
                        mark_stop(spawner, "image-update")
                        await self.stop_single_user(user, name)
                        stopped.append(f"{user.name}/{name}")
            self.log.info("drain: stopped %d server(s) on an old image: %s", len(stopped), ", ".join(stopped))
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"stopped": stopped, "current": current, "unknown": unknown}))

    return DrainAPIHandler


DRAIN_PATH = r"/api/lakehub/drain"


def configure_hub(c, culler_service: str = CULLER_SERVICE) -> None:
    """jupyterhub_config.py: the culler hook and the drain API (under the hub's prefix, /hub/)."""
    install_stop_hooks(culler_service)
    # append: a list, or traitlets' lazy value that adds to what other parts configure (the
    # credentials endpoint, lakehub_hub.credentials, appends its handler the same way)
    c.JupyterHub.extra_handlers.append((DRAIN_PATH, drain_handler()))
