"""The service's settings: `ServiceSettings`, the `service` section of the one configuration.

The model lives with the configuration (`sapphire.ops.config_service`), so the service
and `sapphire config validate` check a setting in one place; this module keeps the
names the service has always imported.
"""

from __future__ import annotations

from sapphire.ops.config_service import ENV_PREFIX, ServiceSettings, SettingsError

__all__ = ["ENV_PREFIX", "ServiceSettings", "SettingsError"]
