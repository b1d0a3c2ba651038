"""HTTP API of the share service (gateway paths `/api/shares`, `/api/shared-with-me`,
`/api/favorites`, `/api/share-preferences`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status

from studyshare.plumbing.access_barrier import AccessBarrierClient
from studyshare.plumbing.auth import CurrentUser
from studyshare.plumbing.http import create_app as base_app
from studyshare.plumbing.http import kafka_ready, mongo_ready
from studyshare.plumbing.http import problem_responses as _problem_responses
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import mongo_client
from studyshare.share.domain.model import Bucket
from studyshare.share.entrypoints.errors import STATUS
from studyshare.share.entrypoints.models import (
    BucketOut,
    Confirmation,
    FavoriteOut,
    InvitationAcceptance,
    LabelCreateIn,
    LabelListed,
    OTPRequestedOut,
    OTPVerifiedOut,
    OTPVerifyIn,
    PreferencesOut,
    RecipientIn,
    SentBucketOut,
    SentBucketsOut,
    ShareAgainIn,
    SharedItemOut,
    SharedWithMeOut,
    ShareIn,
    ShareOut,
)
from studyshare.share.service_layer.handlers import ShareService
from studyshare.share.service_layer.sharing import ShareResult
from studyshare.share.settings import ShareSettings

log = get_logger(__name__)
#: the revocation routes' answers: decided on by every study-store process (issue 15, point 13)
AT_ONCE = (
    "Answers once every study-store API process decides on it, so the recipient's next "
    "request is refused: header `StudyShare-Propagated: true` (`false`: the study store did "
    "not confirm in time; the revocation is stored and takes effect through Kafka)."
)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Refusals documented as `application/problem+json`, the content type they are sent in."""
    documented = _problem_responses(*statuses)
    for entry in documented.values():
        entry["content"] = {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    return documented


# ---------------------------------------------------------------- dependencies
def get_service(request: Request) -> ShareService:
    return request.app.state.service


Service = Annotated[ShareService, Depends(get_service)]

router = APIRouter(tags=["sharing"])


def bucket_out(bucket: Bucket, children: list[str] | None = None) -> BucketOut:
    """A bucket as those who administer it see it (with the reason)."""
    from studyshare.share.adapters.readmodel import render

    return bucket_doc_out(render(bucket), children or [])


def holder_bucket_out(bucket: Bucket, service: ShareService) -> BucketOut:
    """A bucket as a recipient sees it: without the reason, and an anonymized share's studies
    under the UIDs it shows them by (the real ones would name the patient's study)."""
    from studyshare.share.adapters.readmodel import render

    doc = render(bucket)
    for key in ("study_uids", "active_study_uids"):
        doc[key] = [service.shown_uid(doc, uid) for uid in doc[key]]
    return bucket_doc_out(doc | {"reason": None}, [])


def bucket_doc_out(doc: dict[str, Any], children: list[str]) -> BucketOut:
    return BucketOut(
        bucket_id=doc["_id"],
        children=children,
        reason=doc.get("reason"),
        **{
            k: v
            for k, v in doc.items()
            if k in BucketOut.model_fields and k not in ("reason", "children")
        },
    )


def share_out(result: ShareResult) -> ShareOut:
    return ShareOut(
        bucket_id=result.bucket.id,
        confirmation=Confirmation(**result.confirmation),
        confirmation_text=result.confirmation_text,
        favorites_added=result.favorites_added,
    )


@router.post(
    "/api/shares",
    status_code=status.HTTP_201_CREATED,
    response_model=ShareOut,
    summary="Share studies with recipients (creates a bucket); answers the confirmation",
    responses=problem_responses(401, 403, 404, 409, 422, 423),
)
async def share(body: ShareIn, user: CurrentUser, service: Service) -> ShareOut:
    return share_out(await service.share(user, body.to_command()))


@router.get(
    "/api/shares",
    response_model=list[BucketOut],
    summary="Buckets a study belongs to (the Access tab), with the re-share chain and the "
    "names of the senders and recipients",
    responses=problem_responses(401, 403, 422),
)
async def buckets_of_study(
    user: CurrentUser, service: Service, study_uid: Annotated[str, Query(min_length=1)]
) -> list[BucketOut]:
    docs = await service.buckets_of_study(user, study_uid)
    return [bucket_doc_out(d, d["children"]) for d in docs]


@router.get(
    "/api/shares/sent",
    response_model=SentBucketsOut,
    summary="My shares: the buckets I sent, the latest first",
    responses=problem_responses(401, 403, 422),
)
async def sent_buckets(
    user: CurrentUser,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: Annotated[
        Literal["active", "revoked", "expired"] | None,
        Query(description="only the buckets in this state"),
    ] = None,
    locked: Annotated[bool | None, Query(description="only locked (or unlocked) ones")] = None,
) -> SentBucketsOut:
    docs, total = await service.sent_by_me(user, limit, offset, status=status, locked=locked)
    return sent_buckets_out(docs, total, limit, offset)


def sent_buckets_out(docs: list[dict], total: int, limit: int, offset: int) -> SentBucketsOut:
    """One page of buckets with their studies (my shares, a department's locked buckets)."""
    return SentBucketsOut(
        items=[
            SentBucketOut(
                **bucket_doc_out(d, []).model_dump(),
                studies=d["studies"],
                message_state=d.get("message_state"),
            )
            for d in docs
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/api/shares/locked",
    response_model=SentBucketsOut,
    summary="Locked buckets of a department, for its admins and the service desk",
    responses=problem_responses(401, 403, 422),
)
async def locked_buckets(
    user: CurrentUser,
    service: Service,
    department_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="the sending department (the service desk may leave it out: all)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SentBucketsOut:
    docs, total = await service.locked_buckets(user, department_id, limit, offset)
    return sent_buckets_out(docs, total, limit, offset)


@router.get(
    "/api/shares/{bucket_id}",
    response_model=BucketOut,
    summary="One bucket (recipients see it without the reason)",
    responses=problem_responses(401, 403, 404),
)
async def get_bucket(bucket_id: str, user: CurrentUser, service: Service) -> BucketOut:
    bucket, admin = await service.view(user, bucket_id)
    if not admin:
        return holder_bucket_out(bucket, service)
    children = [c["_id"] for c in await service.readmodel.children(bucket_id)]
    return bucket_out(bucket, children)


@router.post(
    "/api/shares/{bucket_id}/share-again",
    status_code=status.HTTP_201_CREATED,
    response_model=ShareOut,
    summary="Share the same set of studies again with other recipients",
    responses=problem_responses(401, 403, 404, 409, 422, 423),
)
async def share_again(
    bucket_id: str, body: ShareAgainIn, user: CurrentUser, service: Service
) -> ShareOut:
    overrides = body.model_dump(exclude={"recipients"}, exclude_none=True)
    result = await service.share_again(
        user, bucket_id, [r.to_input() for r in body.recipients], overrides
    )
    return share_out(result)


@router.delete(
    "/api/shares/{bucket_id}",
    response_model=BucketOut,
    summary="Revoke the whole bucket (and everything re-shared from it)",
    description=AT_ONCE,
    responses=problem_responses(401, 403, 404, 409),
)
async def revoke_bucket(bucket_id: str, user: CurrentUser, service: Service) -> BucketOut:
    return bucket_out(await service.revoke(user, bucket_id, "bucket"))


@router.delete(
    "/api/shares/{bucket_id}/recipients/{recipient_id}",
    response_model=BucketOut,
    summary="Revoke one recipient's access (and what they re-shared)",
    description=AT_ONCE,
    responses=problem_responses(401, 403, 404, 409),
)
async def revoke_recipient(
    bucket_id: str, recipient_id: str, user: CurrentUser, service: Service
) -> BucketOut:
    bucket = await service.revoke(user, bucket_id, "recipient", recipient_id=recipient_id)
    return bucket_out(bucket)


@router.delete(
    "/api/shares/{bucket_id}/studies/{study_uid}",
    response_model=BucketOut,
    summary="Remove one study from the bucket (and from what was re-shared from it)",
    description=AT_ONCE,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def remove_study(
    bucket_id: str, study_uid: str, user: CurrentUser, service: Service
) -> BucketOut:
    bucket = await service.revoke(user, bucket_id, "study", study_uid=study_uid)
    return bucket_out(bucket)


@router.post(
    "/api/shares/{bucket_id}/accept-invitation",
    response_model=BucketOut,
    summary="Accept an invitation by e-mail: the account registered with that address, with "
    "the token of the invitation mail's link",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def accept_invitation(
    bucket_id: str, body: InvitationAcceptance, user: CurrentUser, service: Service
) -> BucketOut:
    return holder_bucket_out(await service.accept_invitation(user, bucket_id, body.token), service)


@router.post(
    "/api/shares/{bucket_id}/otp",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OTPRequestedOut,
    summary="Ask for a one-time code by SMS (two-factor buckets); it voids the previous one",
    description="Rate-limited per recipient and bucket: 429 `OTPRequestedTooOften` with "
    "`Retry-After`. The code opens the bucket only in the login session that enters it. No "
    "code goes to a mobile number that changed within `otp_new_mobile_hold_s` (a day): 403 "
    "`MobileRecentlyChanged`.",
    responses=problem_responses(401, 403, 404, 409, 422, 423, 429),
)
async def request_otp(bucket_id: str, user: CurrentUser, service: Service) -> OTPRequestedOut:
    return OTPRequestedOut(expires_at=await service.request_otp(user, bucket_id))


@router.post(
    "/api/shares/{bucket_id}/otp/verify",
    response_model=OTPVerifiedOut,
    summary="Enter the one-time code; the 5th wrong code in a row locks the bucket (423)",
    description="The 423 of the 5th wrong code answers once every study-store API process "
    "decides on the lock (`StudyShare-Propagated: true`).",
    responses=problem_responses(401, 403, 404, 409, 422, 423),
)
async def verify_otp(
    bucket_id: str, body: OTPVerifyIn, user: CurrentUser, service: Service
) -> OTPVerifiedOut:
    return OTPVerifiedOut(verified_until=await service.verify_otp(user, bucket_id, body.code))


@router.post(
    "/api/shares/{bucket_id}/unlock",
    response_model=BucketOut,
    summary="Unlock a locked bucket (service desk or admin of the sending department)",
    responses=problem_responses(401, 403, 404, 409),
)
async def unlock(bucket_id: str, user: CurrentUser, service: Service) -> BucketOut:
    return bucket_out(await service.unlock(user, bucket_id))


@router.get(
    "/api/shared-with-me",
    response_model=SharedWithMeOut,
    summary="Studies shared with me and with my groups",
    responses=problem_responses(401, 403),
)
async def shared_with_me(
    user: CurrentUser,
    service: Service,
    unread: bool | None = None,
    urgent: bool | None = None,
    study_uid: str | None = None,
    label: str | None = None,
    bucket_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SharedWithMeOut:
    items, total = await service.shared_with_me(
        user,
        unread=unread,
        urgent=urgent,
        study_uid=study_uid,
        label=label,
        bucket_id=bucket_id,
        limit=limit,
        offset=offset,
    )
    return SharedWithMeOut(
        items=[SharedItemOut(**i) for i in items], total=total, limit=limit, offset=offset
    )


@router.get(
    "/api/favorites",
    response_model=list[FavoriteOut],
    summary="My favourite recipients",
    responses=problem_responses(401, 403),
)
async def favorites(user: CurrentUser, service: Service) -> list[FavoriteOut]:
    items = await service.list_favorites(user)
    names = await service.recipient_names(items.values())
    return [
        FavoriteOut(
            favorite_id=fid,
            recipient_id=r.recipient_id,
            kind=r.kind,
            email=r.email,
            name=names.get(r.recipient_id),
        )
        for fid, r in items.items()
    ]


@router.post(
    "/api/favorites",
    status_code=status.HTTP_201_CREATED,
    response_model=FavoriteOut,
    summary="Add a favourite recipient",
    responses=problem_responses(401, 403, 422),
)
async def add_favorite(body: RecipientIn, user: CurrentUser, service: Service) -> FavoriteOut:
    favorite_id, r = await service.add_favorite(user, body.to_input())
    return FavoriteOut(
        favorite_id=favorite_id, recipient_id=r.recipient_id, kind=r.kind, email=r.email
    )


@router.delete(
    "/api/favorites/{favorite_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a favourite",
    responses=problem_responses(401, 403, 404),
)
async def remove_favorite(favorite_id: str, user: CurrentUser, service: Service) -> None:
    await service.remove_favorite(user, favorite_id)


@router.get(
    "/api/labels",
    response_model=list[LabelListed],
    summary="Labels to pick from: mine (seen by me only) and my groups' (seen by their members)",
    responses=problem_responses(401, 403),
)
async def labels(user: CurrentUser, service: Service) -> list[LabelListed]:
    return [LabelListed(**label) for label in await service.list_labels(user)]


@router.post(
    "/api/labels",
    status_code=status.HTTP_201_CREATED,
    response_model=LabelListed,
    summary="Add a label to my list, or to a group's list (members only)",
    responses=problem_responses(401, 403, 409, 422),
)
async def add_label(body: LabelCreateIn, user: CurrentUser, service: Service) -> LabelListed:
    return LabelListed(**await service.add_label(user, body.text, body.group_id))


@router.delete(
    "/api/labels/{label_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a label from my list or from one of my groups' lists",
    responses=problem_responses(401, 403, 404),
)
async def remove_label(label_id: str, user: CurrentUser, service: Service) -> None:
    await service.remove_label(user, label_id)


@router.get(
    "/api/share-preferences",
    response_model=PreferencesOut,
    summary="My remembered two-factor and send-mail defaults",
    responses=problem_responses(401, 403),
)
async def share_preferences(user: CurrentUser, service: Service) -> PreferencesOut:
    prefs = await service.share_preferences(user)
    return PreferencesOut(two_factor=prefs.two_factor, send_mail=prefs.send_mail)


# ---------------------------------------------------------------- app
async def expiry_loop(service: ShareService, interval: float) -> None:
    """Appends `BucketExpired` for buckets past `valid_until` (once per bucket)."""
    while True:
        try:
            await service.expire_due()
        except Exception as exc:  # keep the loop alive; the next round retries
            log.warning("expiry.failed", error=str(exc))
        await asyncio.sleep(interval)


def create_app(settings: ShareSettings | None = None) -> FastAPI:
    settings = settings or ShareSettings()
    client = mongo_client(settings)
    db = client[settings.database_name]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = ShareService(db, settings)
        await service.setup()
        service.access_barrier = AccessBarrierClient.for_settings(settings, service.store)
        app.state.service = service
        task = asyncio.create_task(expiry_loop(service, settings.expiry_interval_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if service.access_barrier is not None:
                await service.access_barrier.close()
            await client.close()

    app = base_app(
        settings,
        title="StudyShare share",
        description="Sharing studies: buckets, recipients, two-factor, revocation.",
        routers=[router],
        lifespan=lifespan,
        readiness=[mongo_ready(db), kafka_ready(settings.kafka)],
        statuses=STATUS,
    )

    return app
