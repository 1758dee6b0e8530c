"""Library listing: the videos and BGM tracks a key may use in its pools.

Library material (ingested by an operator) is visible to every key; a video that came from an
upload is visible only to the keys that uploaded that content.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from autocut.errors import CatalogError
from autocut.library.catalog import Catalog
from server.routes.common import ERROR_RESPONSES, KeyDep, Services, ServicesDep
from server.schemas import BgmTrackOut, LibraryBgmPage, LibraryVideo, LibraryVideoPage

__all__ = ["router"]

router = APIRouter(tags=["library"])

Offset = Annotated[int, Query(ge=0, le=10**7)]
Limit = Annotated[int, Query(ge=1, le=500)]


def _open(services: Services) -> Catalog | None:
    try:
        return Catalog.open(services.settings.library_dir, create=False)
    except CatalogError:
        return None  # no library yet: an empty listing


@router.get(
    "/v1/library/videos",
    response_model=LibraryVideoPage,
    responses=ERROR_RESPONSES,
    summary="Videos usable as photo_id in a clip pool",
)
def list_videos(principal: KeyDep, services: ServicesDep, offset: Offset = 0, limit: Limit = 100) -> LibraryVideoPage:
    cat = _open(services)
    if cat is None:
        return LibraryVideoPage(items=[], total=0, offset=offset, limit=limit)
    with cat:
        sources = cat.sources()
    uploaded = [s for s in sources if services.layout.is_upload(s.path)]
    mine = services.store.owned_upload_hashes(principal.key_id, [s.content_hash for s in uploaded])
    up_ids = {s.photo_id for s in uploaded}
    visible = [s for s in sources if s.photo_id not in up_ids or s.content_hash in mine]
    page = visible[offset : offset + limit]
    return LibraryVideoPage(
        items=[
            LibraryVideo(
                photo_id=s.photo_id,
                duration_s=s.duration_s,
                width=s.width,
                height=s.height,
                fps=s.fps,
                has_audio=s.has_audio,
                kind=s.kind,
                uploaded=s.photo_id in up_ids,
            )
            for s in page
        ],
        total=len(visible),
        offset=offset,
        limit=limit,
    )


@router.get(
    "/v1/library/bgm",
    response_model=LibraryBgmPage,
    responses=ERROR_RESPONSES,
    summary="Background music tracks (usable with bgm.policy = track)",
)
def list_bgm(principal: KeyDep, services: ServicesDep, offset: Offset = 0, limit: Limit = 100) -> LibraryBgmPage:
    cat = _open(services)
    if cat is None:
        return LibraryBgmPage(items=[], total=0, offset=offset, limit=limit)
    with cat:
        tracks = cat.bgm_tracks()
    page = tracks[offset : offset + limit]
    return LibraryBgmPage(
        items=[BgmTrackOut(audio_id=t.audio_id, title=t.title, duration_s=t.duration_s, mood=t.mood) for t in page],
        total=len(tracks),
        offset=offset,
        limit=limit,
    )
