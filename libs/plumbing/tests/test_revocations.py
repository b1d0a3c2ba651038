"""The session revocation list (pure) and the verifier consulting it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import (
    AccountLocked,
    LoggedOut,
    LoginSucceeded,
    PasswordChanged,
    RefreshTokenReuseDetected,
    UserDeactivated,
    UserRolesChanged,
)
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import JWKSVerifier, SessionEnded
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.http import status_of
from studyshare.plumbing.revocations import SessionRevocations
from studyshare.plumbing.tokens import TokenSigner

NOW = 1_800_000_000.0


def event(payload, at: float = NOW):
    return envelope_for(
        payload,
        aggregate_id="ses_1",
        aggregate_version=1,
        actor=Actor(),
        correlation_id="c",
        occurred_at=datetime.fromtimestamp(at, UTC),
    )


def claims(sub="usr_1", sid="ses_1", iat=NOW - 10, kind="user") -> AccessClaims:
    return AccessClaims(sub=sub, sid=sid, iat=iat, exp=int(iat) + 900, kind=kind)


@pytest.fixture
def clock():
    return [NOW]


@pytest.fixture
def revocations(clock):
    return SessionRevocations(keep_s=3600, clock=lambda: clock[0])


def test_a_logged_out_session_is_refused_and_others_are_not(revocations):
    assert revocations.apply(event(LoggedOut(user_id="usr_1", session_id="ses_1")))
    assert revocations.refusal(claims()) == "the session was logged out"
    assert revocations.refusal(claims(sid="ses_2")) is None, "another session of the user"
    assert revocations.refusal(claims(sub="usr_2", sid="ses_3")) is None


def test_refresh_token_reuse_ends_the_session(revocations):
    revocations.apply(event(RefreshTokenReuseDetected(user_id="usr_1", session_id="ses_1")))
    assert "refresh token was reused" in revocations.refusal(claims())


def test_deactivation_ends_every_token_issued_until_then(revocations):
    revocations.apply(event(UserDeactivated(user_id="usr_1", deactivated_by="usr_desk")))
    assert revocations.refusal(claims(sid="ses_a")) == "the account was deactivated"
    assert revocations.refusal(claims(sid=None, iat=NOW)) is not None, "same second: refused"
    assert revocations.refusal(claims(sid="ses_b", iat=NOW + 1)) is None, "a later login"


def test_a_password_change_or_a_roles_change_ends_the_tokens_issued_until_then(revocations):
    """A token issued a millisecond after the end is good (`iat` has milliseconds): the
    session that changed the password, or whose roles changed, refreshes its token at once."""
    for payload, reason in (
        (PasswordChanged(user_id="usr_1", changed_by="usr_1"), "password was changed"),
        (PasswordChanged(user_id="usr_2", changed_by="usr_desk"), "password was reset"),
        (
            UserRolesChanged(
                user_id="usr_3", roles=(), department_ids=(), admin_of=(), changed_by="usr_desk"
            ),
            "roles changed",
        ),
    ):
        assert revocations.apply(event(payload, NOW + 0.5))
        user = payload.user_id
        assert reason in revocations.refusal(claims(sub=user, iat=NOW + 0.5))
        assert revocations.refusal(AccessClaims(sub=user, iat=NOW + 0.501, exp=NOW + 900)) is None


def test_other_events_and_patient_tokens_are_left_alone(revocations):
    at = datetime.fromtimestamp(NOW + 60, UTC)
    for payload in (
        LoginSucceeded(user_id="usr_1", method="password", session_id="ses_1"),
        AccountLocked(user_id="usr_1", locked_until=at, consecutive_failures=5),
    ):
        assert not revocations.apply(event(payload))
    assert revocations.refusal(claims()) is None
    revocations.apply(event(UserDeactivated(user_id="ref:123", deactivated_by="x")))
    assert revocations.refusal(claims(sub="ref:123", sid=None, kind="patient")) is None


def test_ends_older_than_the_longest_token_are_skipped_and_pruned(revocations, clock):
    assert not revocations.apply(event(LoggedOut(user_id="u", session_id="ses_old"), NOW - 4000))
    revocations.apply(event(LoggedOut(user_id="usr_1", session_id="ses_1"), NOW - 100))
    revocations.apply(event(UserDeactivated(user_id="usr_2", deactivated_by="d"), NOW - 50))
    assert len(revocations) == 2
    clock[0] = NOW + 3520
    assert revocations.prune() == 1 and len(revocations) == 1
    clock[0] = NOW + 3600
    assert revocations.refusal(claims(sub="usr_2", iat=NOW - 60)) is None, "pruned on use"
    assert len(revocations) == 0


def test_the_latest_end_of_an_account_counts(revocations):
    revocations.apply(event(PasswordChanged(user_id="usr_1", changed_by="d"), NOW))
    revocations.apply(event(PasswordChanged(user_id="usr_1", changed_by="d"), NOW - 500))
    assert revocations.refusal(claims(sid=None, iat=NOW - 10)) is not None


async def test_the_verifier_refuses_an_ended_session_even_when_remembered():
    signer = TokenSigner()
    revocations = SessionRevocations(keep_s=3600)
    verifier = JWKSVerifier.from_jwks(signer.jwks())
    verifier.revocations = revocations
    token = signer.sign(sub="usr_1", kind="user", sid="ses_live")
    other = signer.sign(sub="usr_1", kind="user", sid="ses_other")
    assert (await verifier.verify(token)).sid == "ses_live"
    revocations.apply(event(LoggedOut(user_id="usr_1", session_id="ses_live"), time.time()))
    with pytest.raises(SessionEnded, match="logged out") as refused:
        await verifier.verify(token)
    assert status_of(refused.value) == 401 and refused.value.rule == "SessionEnded"
    assert (await verifier.verify(other)).sid == "ses_other"
    fresh = JWKSVerifier.from_jwks(signer.jwks())
    fresh.revocations = revocations
    with pytest.raises(SessionEnded):
        await fresh.verify(token)
