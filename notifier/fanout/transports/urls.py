"""From a configured Apprise URL to the `Target` that sends it.

`json://`/`jsons://` (POST) and Discord webhooks (`discord://ID/TOKEN`, or the
`https://discord.com/api/webhooks/ID/TOKEN` URL Discord shows, in all its spellings) are sent
natively (`native=False` sends them through Apprise too); every other URL Apprise can load goes through Apprise in the executor. `AppriseUrl` is
the option type of a plugin option holding one.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from ...logs import redactor
from .apprise import AppriseUrlTarget, apprise_secrets
from .common import Target, mask_url, target_id
from .discord_webhook import DiscordWebhookTarget, is_discord_webhook_url
from .json_http import JsonTarget

__all__ = ["AppriseUrl", "check_apprise_url", "parse_apprise_url"]


def parse_apprise_url(url: str, *, native: bool = True, embed: bool = True) -> Target:
    """Resolve one Apprise URL to how it is sent. Raises ValueError (no secrets in the message)."""
    from apprise import Apprise, AppriseAsset
    from apprise.plugins.custom_json import NotifyJSON

    text = url.strip()
    if is_discord_webhook_url(text):
        return DiscordWebhookTarget.parse(text, embed=embed, via_apprise=not native)
    try:
        service = Apprise.instantiate(
            text, asset=AppriseAsset(service_timeout=0), suppress_exceptions=False
        )
    except Exception as exc:  # noqa: BLE001 - Apprise raises several types for a bad URL
        raise ValueError(f"Apprise cannot load {mask_url(text)} ({type(exc).__name__})") from None
    if service is None:
        raise ValueError(f"not a URL Apprise supports ({mask_url(text)})")
    # Apprise's privacy URL (secrets masked), without the query string of Apprise's defaults.
    privacy_url = str(service.url(privacy=True))  # type: ignore[no-untyped-call]
    display = redactor.redact(privacy_url.partition("?")[0])
    if native and isinstance(service, NotifyJSON) and service.method == "POST":
        return JsonTarget(target_id=target_id(text), display=display, service=service)
    return AppriseUrlTarget(
        target_id=target_id(text),
        display=display,
        url=text,
        private=tuple(apprise_secrets(service)),
    )


def check_apprise_url(url: str) -> str:
    """Pydantic validator for an option holding an Apprise URL: it must load, or the config
    error names the option (and shows the URL masked)."""
    parse_apprise_url(url)
    return url.strip()


# An option value that must be an Apprise URL Apprise can load.
AppriseUrl = Annotated[str, AfterValidator(check_apprise_url)]
