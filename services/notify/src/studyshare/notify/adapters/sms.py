"""SMS through a provider's HTTP API: `POST {sms_url}` with `{"to", "text", "sender"}` and a
bearer token (the local sink at `/dev/sms` takes the same request).

The text holds a one-time code: it is never logged, and errors quote the provider's status only.
"""

from __future__ import annotations

import httpx

from studyshare.notify.domain.model import Permanent, Sent, Transient
from studyshare.notify.settings import NotifySettings


class HttpSmsGateway:
    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=settings.sms_timeout_s)

    async def send(self, to: str, text: str) -> Sent | Transient | Permanent:
        """429 and 5xx are retried; another 4xx means the request itself is refused."""
        try:
            response = await self.client.post(
                self.settings.sms_url,
                json={"to": to, "text": text, "sender": self.settings.sms_sender},
                headers={"Authorization": f"Bearer {self.settings.sms_token}"},
            )
        except httpx.HTTPError as exc:
            return Transient(f"SMS provider unreachable: {type(exc).__name__}")
        if response.is_success:
            return Sent()
        reason = f"SMS provider replied {response.status_code}"
        if response.status_code == 429 or response.status_code >= 500:
            return Transient(reason)
        return Permanent(reason)

    async def close(self) -> None:
        await self.client.aclose()
