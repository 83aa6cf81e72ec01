"""`Service`: what the app's routes reach through `request.app.state.service`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sapphire.api.jobs import JobManager
    from sapphire.api.middleware import RateLimiter
    from sapphire.api.nodes import NodeManager
    from sapphire.api.security.service import AuthService
    from sapphire.api.settings import ServiceSettings
    from sapphire.compliance.audit import AuditLog
    from sapphire.engine.stream import EventStream
    from sapphire.store import Store
    from sapphire.store.keyvault import KeyVault


@dataclass
class Service:
    """The service's components, built once by `create_app`."""

    settings: ServiceSettings
    home: Path
    store: Store
    auth: AuthService
    audit: AuditLog
    vault: KeyVault
    events: EventStream
    nodes: NodeManager
    jobs: JobManager
    limiter: RateLimiter
