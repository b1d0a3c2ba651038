"""Two-factor access to a bucket: the one-time code sent to the recipient (`request_otp`),
its verification (`verify_otp`; wrong codes lock the bucket) and the unlock."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.sealing import seal
from studyshare.share.domain import exceptions
from studyshare.share.domain.model import Bucket, OTPRequestLimit
from studyshare.share.service_layer.base import ShareBase, actor_of

OTP_RETRIES = 200


class TwoFactor(ShareBase):
    """The one-time codes of two-factor buckets."""

    def _mac(self, bucket_id: str, user_id: str, code: str) -> str:
        key = self.settings.otp_hmac_secret.encode()
        return hmac.new(key, f"{bucket_id}|{user_id}|{code}".encode(), hashlib.sha256).hexdigest()

    async def _holder(self, principal: AccessClaims, bucket: Bucket) -> str:
        """How the caller holds the bucket: themselves or a group/department, active first."""
        keys = await self._holder_keys(principal)
        for key in [k for k in keys if k in bucket.holder_ids] + keys:
            recipient = bucket.recipient_of(key)
            if recipient is not None:
                return recipient  # a revoked holder is refused by the domain with its rule
        raise exceptions.BucketNotFound(f"no bucket {bucket.id}")

    @property
    def otp_request_limit(self) -> OTPRequestLimit:
        return OTPRequestLimit(
            self.settings.otp_requests_per_window,
            timedelta(seconds=self.settings.otp_request_window_seconds),
        )

    async def request_otp(self, principal: AccessClaims, bucket_id: str) -> datetime:
        """A fresh 6-digit code, kept only as a keyed hash; sealed for notify in the event.
        Rate-limited per recipient and bucket; it voids the recipient's earlier codes."""
        now = self.clock()
        bucket = await self._load(bucket_id)
        holder = await self._holder(principal, bucket)
        bucket._check_otp_allowed(holder, now)
        user = await self.directory.user(principal.sub)
        if not user or not user.get("mobile"):
            raise exceptions.NoRegisteredMobile(
                "register a mobile number to receive the code by SMS"
            )
        self._check_mobile_held(user, now)
        code = f"{secrets.randbelow(10**6):06d}"
        otp_id = new_id("otp")
        expires_at = now + timedelta(seconds=self.settings.otp_ttl_seconds)
        await self.otp_codes.add(
            {
                "_id": otp_id,
                "bucket_id": bucket_id,
                "user_id": principal.sub,
                "mac": self._mac(bucket_id, principal.sub, code),
                "expires_at": expires_at,
            }
        )
        sealed = seal(code, self.settings.otp_seal_public_key)
        limit = self.otp_request_limit
        try:
            await self.buckets.execute(
                bucket_id,
                lambda b: b.request_otp(
                    holder,
                    principal.sub,
                    otp_id,
                    sealed,
                    expires_at,
                    user.get("language") or "en",
                    now,
                    limit,
                ),
                actor_of(principal),
                retries=OTP_RETRIES,
            )
        except BaseException:
            await self.otp_codes.remove(otp_id)
            raise
        await self.otp_codes.void_older(bucket_id, principal.sub, expires_at, keep=otp_id)
        return expires_at

    def _check_mobile_held(self, user: dict, now: datetime) -> None:
        """No code to a number that changed within the hold: the account's password and a
        code to the new number move it, so a stolen password would move the second factor."""
        changed = user.get("mobile_changed_at")
        hold = timedelta(seconds=self.settings.otp_new_mobile_hold_s)
        if changed is None or not hold:
            return
        until = changed + hold  # the database answers aware datetimes (UTC)
        if now < until:
            raise exceptions.MobileRecentlyChanged(
                "your mobile number changed lately: for your safety, codes for two-factor "
                f"shares go to it from {until:%Y-%m-%d %H:%M} UTC (your previous number was "
                "told of the change)"
            )

    async def verify_otp(self, principal: AccessClaims, bucket_id: str, code: str) -> datetime:
        """Each attempt appends at the next version; a conflict reloads and decides again, so
        five wrong codes lock the bucket however many arrive at once."""
        now = self.clock()
        bucket = await self._load(bucket_id)
        holder = await self._holder(principal, bucket)
        bucket._check_otp_allowed(holder, now)
        otp_id = await self.otp_codes.matching(
            bucket_id, principal.sub, self._mac(bucket_id, principal.sub, code.strip())
        )
        verified_for = timedelta(hours=self.settings.otp_verified_hours)
        bucket, envelopes = await self.buckets.execute(
            bucket_id,
            lambda b: b.verify_otp(holder, principal.sub, otp_id, now, verified_for, principal.sid),
            actor_of(principal),
            retries=OTP_RETRIES,
        )
        kinds = [e.event_type for e in envelopes]
        if "OTPVerified" in kinds:
            await self.otp_codes.remove(otp_id)
            return bucket.verified_until[(principal.sub, principal.sid)]
        if "BucketLocked" in kinds:
            await self._propagate([bucket_id])
            raise exceptions.BucketIsLocked(
                f"that was the 5th wrong code in a row: bucket {bucket_id} is now locked"
            )
        raise exceptions.WrongOTP(
            f"wrong, expired or already used code ({bucket.consecutive_failures} of 5 in a row)"
        )

    async def unlock(self, principal: AccessClaims, bucket_id: str) -> Bucket:
        await self._load(bucket_id)
        bucket, _ = await self.buckets.execute(
            bucket_id,
            lambda b: b.unlock(principal.sub, principal.roles, principal.admin_of),
            actor_of(principal),
        )
        return bucket
