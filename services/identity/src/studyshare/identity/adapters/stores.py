"""Identity's secret-bearing and hot-path state, never put in events: credentials, sessions
and refresh tokens, failure counters, patient one-time codes, the development signing key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from studyshare.identity.adapters.passwords import token_digest
from studyshare.identity.domain.lockout import LockoutPolicy
from studyshare.plumbing.tokens import TokenSigner

CREDENTIALS, SESSIONS, REFRESH, THROTTLE, PATIENT_OTPS, KEYS, EXTERNAL, MOBILE_CHANGES = (
    "credentials",
    "sessions",
    "refresh_tokens",
    "login_throttle",
    "patient_otps",
    "signing_keys",
    "external_identities",
    "mobile_changes",
)
EXTERNAL_STATES, EXTERNAL_TICKETS = ("external_login_states", "external_login_tickets")
MAX_WRONG_MOBILE_CODES = 5


async def ensure_indexes(db: AsyncDatabase) -> None:
    await db[REFRESH].create_index([("session_id", ASCENDING)], name="by_session")
    await db[SESSIONS].create_index([("user_id", ASCENDING)], name="by_user")


class Credentials:
    """Password hash and TOTP secret per account (`_id` = user id)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[CREDENTIALS]

    async def create(self, user_id: str, password_hash: str, session=None) -> None:
        await self.col.insert_one(
            {"_id": user_id, "password_hash": password_hash, "totp_secret": None}, session=session
        )

    async def get(self, user_id: str) -> dict[str, Any] | None:
        return await self.col.find_one({"_id": user_id})

    async def set_password(self, user_id: str, password_hash: str, session=None) -> None:
        await self.col.update_one(
            {"_id": user_id}, {"$set": {"password_hash": password_hash}}, session=session
        )

    async def set_pending_totp(self, user_id: str, secret: str) -> None:
        await self.col.update_one({"_id": user_id}, {"$set": {"totp_pending_secret": secret}})

    async def activate_totp(self, user_id: str, secret: str, step: int, session=None) -> None:
        await self.col.update_one(
            {"_id": user_id},
            {
                "$set": {"totp_secret": secret, "totp_last_step": step},
                "$unset": {"totp_pending_secret": ""},
            },
            session=session,
        )

    async def remove_totp(self, user_id: str, session=None) -> None:
        """The secret goes; the last used step stays, so old codes stay spent."""
        await self.col.update_one(
            {"_id": user_id},
            {"$set": {"totp_secret": None}, "$unset": {"totp_pending_secret": ""}},
            session=session,
        )

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        """Atomically record `step` as used; False if it (or a later one) already was."""
        result = await self.col.update_one(
            {
                "_id": user_id,
                "$or": [{"totp_last_step": {"$lt": step}}, {"totp_last_step": None}],
            },
            {"$set": {"totp_last_step": step}},
        )
        return result.modified_count == 1


class Sessions:
    """Login sessions and their rotating refresh tokens (stored as digests)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.sessions = db[SESSIONS]
        self.tokens = db[REFRESH]

    async def open(
        self, session_id: str, user_id: str, refresh_token: str, now: datetime, ttl_s: int
    ) -> None:
        await self.start(session_id, user_id, now)
        await self.add_token(session_id, user_id, refresh_token, now, ttl_s)

    async def start(self, session_id: str, holder_id: str, now: datetime) -> None:
        """A session without a refresh token (a patient's is never refreshed): its end is
        recorded here all the same."""
        await self.sessions.insert_one(
            {"_id": session_id, "user_id": holder_id, "created_at": now, "revoked_at": None}
        )

    async def add_token(
        self, session_id: str, user_id: str, refresh_token: str, now: datetime, ttl_s: int
    ) -> None:
        await self.tokens.insert_one(
            {
                "_id": token_digest(refresh_token),
                "session_id": session_id,
                "user_id": user_id,
                "issued_at": now,
                "expires_at": now + timedelta(seconds=ttl_s),
                "used_at": None,
            }
        )

    async def find_token(self, refresh_token: str) -> dict[str, Any] | None:
        return await self.tokens.find_one({"_id": token_digest(refresh_token)})

    async def use_token(self, refresh_token: str, now: datetime) -> bool:
        """Mark the token used; False when it was used before (or does not exist). An update,
        not a `findAndModify`: the local database scans every token ever issued for that."""
        spent = await self.tokens.update_one(
            {"_id": token_digest(refresh_token), "used_at": None}, {"$set": {"used_at": now}}
        )
        return spent.modified_count == 1

    async def get(self, session_id: str) -> dict[str, Any] | None:
        return await self.sessions.find_one({"_id": session_id})

    async def revoke(self, session_id: str, now: datetime, reason: str) -> bool:
        result = await self.sessions.update_one(
            {"_id": session_id, "revoked_at": None},
            {"$set": {"revoked_at": now, "revoked_reason": reason}},
        )
        return result.modified_count == 1

    async def revoke_all_of(
        self, user_id: str, now: datetime, reason: str, keep: str | None = None, session=None
    ) -> None:
        """End every session of the account (but `keep`, the caller's own)."""
        await self.sessions.update_many(
            {"user_id": user_id, "revoked_at": None, **({"_id": {"$ne": keep}} if keep else {})},
            {"$set": {"revoked_at": now, "revoked_reason": reason}},
            session=session,
        )


@dataclass(frozen=True)
class Attempt:
    """A guess admitted by `Throttle.admit`, already counted as the `failures`-th failure."""

    key: str
    failures: int
    policy: LockoutPolicy


class Throttle:
    """Consecutive failure counters per key (`user:<name>`, `ip:<address>`,
    `patient:<reference id>`).

    A guess is admitted and counted as a failure in one atomic step (`find_one_and_update`
    guarded by "not locked and attempts left"), before the secret is evaluated; so however many
    guesses arrive at once, at most the policy's threshold of them are evaluated before the lock,
    and one per ended lock after it. A guess refused here writes nothing. The outcome then
    settles the count: `failed` may lock the key, `succeeded` clears it, `release` gives back a
    count that was no guess (a code was only asked for, the account is pending, ...).

    Document: `failures` (consecutive, the admitted in flight included), `remaining` (guesses
    left before the next lock), `locked_until`, `last_failure_at`.
    """

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[THROTTLE]

    async def admit(self, key: str, now: datetime, policy: LockoutPolicy) -> Attempt | datetime:
        """Count a guess in advance: the `Attempt`, or the time until which `key` is locked."""
        cutoff = policy.forgotten_before(now)
        await self.col.delete_one(  # the decay: see LockoutPolicy.forgets
            {
                "_id": key,
                "last_failure_at": {"$lte": cutoff},
                "$or": [{"locked_until": None}, {"locked_until": {"$lte": cutoff}}],
            }
        )
        open_now = {
            "_id": key,
            "remaining": {"$gt": 0},
            "$or": [{"locked_until": None}, {"locked_until": {"$lte": now}}],
        }
        count = {"$inc": {"failures": 1, "remaining": -1}, "$set": {"last_failure_at": now}}
        for _ in range(3):
            doc = await self.col.find_one_and_update(
                open_now, count, return_document=ReturnDocument.AFTER
            )
            if doc is not None:
                return Attempt(key, int(doc["failures"]), policy)
            current = await self.col.find_one({"_id": key})
            if current is not None:
                until = current.get("locked_until")
                if until and until > now:
                    return until
                if current.get("remaining", 0) <= 0:
                    # no guess left and no lock yet: the last admitted guess is being evaluated
                    return now + timedelta(seconds=1)
                continue  # a concurrent first guess created it meanwhile: count against it
            try:
                await self.col.insert_one(
                    {
                        "_id": key,
                        "failures": 1,
                        "remaining": policy.attempts_left(1),
                        "locked_until": None,
                        "last_failure_at": now,
                    }
                )
                return Attempt(key, 1, policy)
            except DuplicateKeyError:
                continue  # a concurrent first guess created it: count against that one
        return now + timedelta(seconds=1)

    async def failed(self, attempt: Attempt, now: datetime) -> datetime | None:
        """The guess was wrong (it is counted already): lock the key when the policy says so;
        the time it is locked until."""
        until = attempt.policy.locked_until(attempt.failures, now)
        if until is not None:
            await self.col.update_one(
                {"_id": attempt.key},
                {
                    "$set": {
                        "locked_until": until,
                        "remaining": attempt.policy.attempts_left(attempt.failures),
                    }
                },
            )
        return until

    async def succeeded(self, attempt: Attempt) -> None:
        """The secret was right: the key's count starts again."""
        await self.reset(attempt.key)

    async def release(self, attempt: Attempt) -> None:
        """The admitted request turned out to be no guess: give its count back."""
        await self.col.update_one(
            {"_id": attempt.key, "failures": {"$gt": 0}},
            {"$inc": {"failures": -1, "remaining": 1}},
        )

    async def reset(self, key: str) -> None:
        await self.col.delete_one({"_id": key})

    async def locked(self, prefix: str, now: datetime) -> dict[str, dict[str, Any]]:
        """The keys starting with `prefix` (e.g. `user:`) locked at `now`, without the
        prefix, with their counters."""
        cursor = self.col.find(
            {"_id": {"$gte": prefix, "$lt": prefix + "\uffff"}, "locked_until": {"$gt": now}}
        )
        return {doc["_id"].removeprefix(prefix): doc async for doc in cursor}


class PatientOTPs:
    """The pending SMS code of a patient login, as a digest, single use, expiring; keyed by
    the reference id of the number typed (never the number)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[PATIENT_OTPS]

    async def recently_issued(self, reference_id: str, since: datetime) -> bool:
        """A code still valid and sent after `since` (no second SMS within the resend gap)."""
        doc = await self.col.find_one({"_id": reference_id})
        return bool(doc and doc.get("issued_at") and doc["issued_at"] > since)

    async def put(
        self, reference_id: str, code: str, expires_at: datetime, issued_at: datetime
    ) -> None:
        await self.col.replace_one(
            {"_id": reference_id},
            {
                "digest": token_digest(f"{reference_id}:{code}"),
                "expires_at": expires_at,
                "issued_at": issued_at,
            },
            upsert=True,
        )

    async def consume(self, reference_id: str, code: str, now: datetime) -> bool:
        doc = await self.col.find_one_and_delete(
            {
                "_id": reference_id,
                "digest": token_digest(f"{reference_id}:{code.strip()}"),
                "expires_at": {"$gt": now},
            }
        )
        return doc is not None


class MobileChanges:
    """The pending change of an account's mobile number (`_id` = user id): the new number
    and its code as a digest, single use, expiring; a new request replaces (voids) it, and
    the fifth wrong code drops it."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[MOBILE_CHANGES]

    async def requested_after(self, user_id: str, since: datetime) -> datetime | None:
        """When the pending change was asked for, if after `since` (the resend gap)."""
        doc = await self.col.find_one({"_id": user_id})
        if doc and doc.get("requested_at") and _aware(doc["requested_at"]) > since:
            return _aware(doc["requested_at"])
        return None

    async def put(
        self,
        user_id: str,
        change_id: str,
        mobile: str,
        code: str,
        expires_at: datetime,
        requested_at: datetime,
        session: AsyncClientSession | None = None,
    ) -> None:
        await self.col.replace_one(
            {"_id": user_id},
            {
                "change_id": change_id,
                "mobile": mobile,
                "digest": token_digest(f"{user_id}:{change_id}:{code}"),
                "expires_at": expires_at,
                "requested_at": requested_at,
                "wrong_codes": 0,
            },
            upsert=True,
            session=session,
        )

    async def consume(self, user_id: str, code: str, now: datetime) -> dict[str, Any] | None:
        """The pending change when `code` is its code (then it is gone), else None (a wrong
        code is counted; the fifth drops the change)."""
        doc = await self.col.find_one({"_id": user_id})
        if doc is None:
            return None
        digest = token_digest(f"{user_id}:{doc['change_id']}:{code.strip()}")
        taken = await self.col.find_one_and_delete(
            {
                "_id": user_id,
                "change_id": doc["change_id"],
                "digest": digest,
                "expires_at": {"$gt": now},
                "wrong_codes": {"$lt": MAX_WRONG_MOBILE_CODES},
            }
        )
        if taken is not None:
            return taken
        counted = await self.col.find_one_and_update(
            {"_id": user_id, "change_id": doc["change_id"]},
            {"$inc": {"wrong_codes": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if counted is not None and counted["wrong_codes"] >= MAX_WRONG_MOBILE_CODES:
            await self.col.delete_one({"_id": user_id, "change_id": doc["change_id"]})
        return None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SigningKeys:
    """Development only: the generated signing key, shared by every API process."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[KEYS]

    async def development_signer(self) -> TokenSigner:
        doc = await self.col.find_one({"_id": "current"})
        if doc is None:
            fresh = TokenSigner()
            try:
                await self.col.insert_one(
                    {
                        "_id": "current",
                        "pem": fresh.private_pem(),
                        "kid": fresh.kid,
                        "created_at": datetime.now(UTC),
                    }
                )
                return fresh
            except DuplicateKeyError:
                doc = await self.col.find_one({"_id": "current"})
        assert doc is not None
        return TokenSigner.from_pem(doc["pem"], doc["kid"])


class ExternalIdentities:
    """Links `<provider>:<subject>` to an account."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.col = db[EXTERNAL]

    async def user_for(self, provider: str, subject: str) -> str | None:
        doc = await self.col.find_one({"_id": f"{provider}:{subject}"})
        return doc["user_id"] if doc else None

    async def link(
        self, provider: str, subject: str, user_id: str, session: AsyncClientSession | None = None
    ) -> None:
        await self.col.replace_one(
            {"_id": f"{provider}:{subject}"}, {"user_id": user_id}, upsert=True, session=session
        )


class ExternalLogins:
    """The one-time values of an external login, kept as digests: the `state` handed out at its
    start (bound to the provider, and to the user who links an identity) and the ticket of a
    login that waits for the account's TOTP code. Each is taken once, before it expires."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.states = db[EXTERNAL_STATES]
        self.tickets = db[EXTERNAL_TICKETS]

    async def put_state(
        self, state: str, provider: str, user_id: str | None, expires_at: datetime
    ) -> None:
        await self.states.insert_one(
            {
                "_id": token_digest(state),
                "provider": provider,
                "user_id": user_id,
                "expires_at": expires_at,
            }
        )

    async def take_state(self, state: str, provider: str, now: datetime) -> dict[str, Any] | None:
        return await self.states.find_one_and_delete(
            {"_id": token_digest(state), "provider": provider, "expires_at": {"$gt": now}}
        )

    async def put_ticket(
        self, ticket: str, provider: str, user_id: str, expires_at: datetime
    ) -> None:
        await self.tickets.insert_one(
            {
                "_id": token_digest(ticket),
                "provider": provider,
                "user_id": user_id,
                "expires_at": expires_at,
            }
        )

    async def take_ticket(self, ticket: str, provider: str, now: datetime) -> dict[str, Any] | None:
        return await self.tickets.find_one_and_delete(
            {"_id": token_digest(ticket), "provider": provider, "expires_at": {"$gt": now}}
        )
