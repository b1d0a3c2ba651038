"""Accepting an invitation by e-mail: only the account registered with the invited address,
bringing the token of the invitation mail's link, takes the e-mail recipient's place; from then
on it holds the bucket like a user recipient (its list, two-factor), and revoking the e-mail
recipient ends it."""

from __future__ import annotations

import json

from studyshare.contracts.invitations import invitation_token

from .conftest import user

INVITED = "New.Colleague@Example.org"


def link_token(env, bucket_id: str, email: str = INVITED) -> dict[str, str]:
    """The body carrying the token of the invitation mail's link (as notify makes it)."""
    secret = env.app.state.settings.invitation_secret
    return {"token": invitation_token(secret, bucket_id, email)}


async def test_the_account_with_the_invited_address_accepts_and_holds_the_bucket(env):
    await env.seed(
        user("usr_new", email="new.colleague@example.org"),
        user("usr_other", email="someone@example.org"),
    )
    out = await env.share(recipients=[{"kind": "email", "email": INVITED}], two_factor=True)
    bucket = out["bucket_id"]
    path = f"/api/shares/{bucket}/accept-invitation"
    before = await env.client.get("/api/shared-with-me", headers=env.as_("usr_new"))
    assert before.json()["items"] == [], "an invitation is nobody's until accepted"

    mail = link_token(env, bucket)
    other = await env.client.post(path, json=mail, headers=env.as_("usr_other"))
    assert other.status_code == 403 and other.json()["rule"] == "InvitationNotForYou"
    accepted = await env.client.post(path, json=mail, headers=env.as_("usr_new"))
    assert accepted.status_code == 200, accepted.text
    [recipient] = accepted.json()["recipients"]
    assert (recipient["recipient_id"], recipient["user_id"]) == (
        "email:new.colleague@example.org",
        "usr_new",
    )
    assert accepted.json()["reason"] is None, "a recipient never sees the reason"
    again = await env.client.post(path, json=mail, headers=env.as_("usr_new"))
    assert again.status_code == 200
    assert await env.count(event_type="InvitationAccepted") == 1, "accepted once"

    items = (await env.client.get("/api/shared-with-me", headers=env.as_("usr_new"))).json()
    assert [(i["bucket_id"], i["via"]) for i in items["items"]] == [
        (bucket, [{"id": "email:new.colleague@example.org", "name": None}])
    ]
    seen = await env.client.get(f"/api/shares/{bucket}", headers=env.as_("usr_new"))
    assert seen.status_code == 200
    code = await env.client.post(f"/api/shares/{bucket}/otp", headers=env.as_("usr_new"))
    assert code.status_code == 202, code.text
    [requested] = await env.events(event_type="OTPRequested")
    assert requested["payload"]["recipient_id"] == "usr_new", "the SMS goes to the account"

    revoked = await env.client.delete(
        f"/api/shares/{bucket}/recipients/email:new.colleague@example.org",
        headers=env.as_("usr_sender"),
    )
    assert revoked.status_code == 200, revoked.text
    after = await env.client.get("/api/shared-with-me", headers=env.as_("usr_new"))
    assert after.json()["items"] == []
    late = await env.client.post(path, json=mail, headers=env.as_("usr_new"))
    assert late.status_code == 409


async def test_an_account_without_the_address_or_a_user_share_has_nothing_to_accept(env):
    out = await env.share()  # shared with a user, no invitation
    refused = await env.client.post(
        f"/api/shares/{out['bucket_id']}/accept-invitation",
        json=link_token(env, out["bucket_id"]),
        headers=env.as_("usr_r1"),
    )
    assert refused.status_code == 403 and refused.json()["rule"] == "InvitationNotForYou"
    missing = await env.client.post(
        "/api/shares/bkt_nope/accept-invitation",
        json=link_token(env, "bkt_nope"),
        headers=env.as_("usr_r1"),
    )
    assert missing.status_code == 404


async def test_an_account_that_only_took_the_invited_address_cannot_accept(env):
    """An address on an account is what its holder typed: someone who set theirs to the
    invited one (the bucket id is in the Access tab and in the mail's link) is refused without
    the mail's token, and the invitation stays the invitee's."""
    await env.seed(
        user("usr_thief", email="new.colleague@example.org"),
        user("usr_new", email="new.colleague@example.org"),
    )
    bucket = (await env.share(recipients=[{"kind": "email", "email": INVITED}]))["bucket_id"]
    path = f"/api/shares/{bucket}/accept-invitation"
    thief = env.as_("usr_thief")
    no_body = await env.client.post(path, headers=thief)
    assert no_body.status_code == 422, no_body.text
    for token in ("guessed", link_token(env, "bkt_other")["token"]):
        refused = await env.client.post(path, json={"token": token}, headers=thief)
        assert refused.status_code == 403, refused.text
        assert refused.json()["rule"] == "InvitationLinkRequired"
    assert await env.count(event_type="InvitationAccepted") == 0
    accepted = await env.client.post(path, json=link_token(env, bucket), headers=env.as_("usr_new"))
    assert accepted.status_code == 200, accepted.text


async def test_a_token_that_is_no_token_is_refused_with_its_reason(env):
    """Any text as a token is a 4xx, never a crash (schemathesis sent lone surrogates)."""
    await env.seed(user("usr_new", email="new.colleague@example.org"))
    bucket = (await env.share(recipients=[{"kind": "email", "email": INVITED}]))["bucket_id"]
    path = f"/api/shares/{bucket}/accept-invitation"
    headers = {**env.as_("usr_new"), "Content-Type": "application/json"}
    for token in ("\udc01abc", "é" * 10, "x" * 65, ""):
        body = json.dumps({"token": token})  # a lone surrogate escaped, as schemathesis sends it
        refused = await env.client.post(path, content=body, headers=headers)
        assert refused.status_code == 422, (token, refused.status_code, refused.text)
    assert await env.count(event_type="InvitationAccepted") == 0


def test_any_text_is_only_an_unequal_token():
    from studyshare.contracts.invitations import is_invitation_token

    for token in ("\udc01abc", "é", "", None):
        assert not is_invitation_token("k", "bkt_1", "a@example.org", token)
    good = invitation_token("k", "bkt_1", " A@Example.org")
    assert is_invitation_token("k", "bkt_1", "a@example.org", good)
