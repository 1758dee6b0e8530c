"""The job spec that crosses from the API to the worker, job states and ids (no Redis needed).

The stored JSON is a contract between API and worker processes of different versions: these
tests pin it to the shape the records have always had.
"""

from __future__ import annotations

import json
import re

import pytest

from autocut.types import PoolItem
from server.ids import id_pattern, new_id
from server.jobspec import EditJobSpec, IngestJobSpec, LibraryRef, MediaRef, RebuildJobSpec, UploadRef
from server.schemas import JOB_ID_PATTERN, EditRequest, RebuildRequest
from server.store import ACTIVE_STATES, TERMINAL_STATES, JobState

# An edit spec as the API has always stored it (`spec` field of a job hash).
STORED_EDIT = {
    "request": {
        "product": {
            "name": "Juicer Cup",
            "brand": "FreshCo",
            "category": "kitchen",
            "selling_points": ["juice in 30 seconds"],
            "description": "",
            "image_id": None,
        },
        "clips": [
            {"clip_id": "clp_" + "0" * 24, "photo_id": None, "path": None, "text": ""},
            {"clip_id": None, "photo_id": 3, "path": None, "text": "a cup"},
            {"clip_id": None, "photo_id": None, "path": "shoot/a.mp4", "text": ""},
        ],
        "script": ["No time for breakfast?"],
        "options": {
            "aspect": "1:1",
            "resolution": 720,
            "max_duration_s": 30.0,
            "language": "zh",
            "voice": {"engine": "espeak", "name": "cmn"},
            "bgm": {"policy": "auto", "audio_id": None, "exclude_audio_ids": [4]},
            "n_variants": 2,
            "planner": None,
            "transition": "fade",
            "subtitles": False,
            "seed": 7,
        },
    },
    "pool": [
        {
            "kind": "upload",
            "clip_id": "clp_" + "0" * 24,
            "sha256": "f" * 64,
            "path": "/data/u.mp4",
            "ingest_job_id": "job_" + "1" * 24,
            "text": "",
        },
        {"kind": "library", "photo_id": 3, "text": "a cup"},
        {"kind": "media", "path": "shoot/a.mp4", "text": ""},
    ],
    "image_path": "/data/img.png",
    "planner": "heuristic",
}


def _json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def test_edit_spec_reads_and_writes_the_stored_json_unchanged():
    spec = EditJobSpec.model_validate(STORED_EDIT)
    assert [type(r) for r in spec.pool] == [UploadRef, LibraryRef, MediaRef]
    assert _json(spec.model_dump(mode="json")) == _json(STORED_EDIT)  # same keys, same order


def test_edit_spec_from_a_request_stores_the_schema_defaults_once():
    req = EditRequest.model_validate({"product": {"name": "x"}, "clips": [{"photo_id": 1}]})
    spec = EditJobSpec(
        request=req, pool=[LibraryRef(kind="library", photo_id=1, text="")], image_path=None, planner="heuristic"
    )
    stored = spec.model_dump(mode="json")
    assert list(stored) == ["request", "pool", "image_path", "planner"]
    assert stored["request"] == req.model_dump(mode="json")
    # The worker derives the planner input from the stored values, not from defaults of its own.
    pr = EditJobSpec.model_validate(stored).plan_request([PoolItem(photo_id=1)])
    opts = req.options
    assert (pr.language, pr.max_duration_s, pr.n_variants, pr.seed) == (
        opts.language,
        opts.max_duration_s,
        opts.n_variants,
        opts.seed,
    )
    assert (pr.output.aspect, min(pr.output.width, pr.output.height), pr.output.transition) == (
        opts.aspect,
        opts.resolution,
        opts.transition,
    )
    assert (pr.voice.engine, pr.voice.name, pr.voice.language) == (opts.voice.engine, opts.voice.name, opts.language)
    assert pr.product.name == "x" and pr.product.image_path is None and pr.script is None


def test_plan_request_carries_every_option():
    pr = EditJobSpec.model_validate(STORED_EDIT).plan_request([PoolItem(photo_id=1), PoolItem(photo_id=3)])
    assert pr.product.model_dump() == {
        "name": "Juicer Cup",
        "brand": "FreshCo",
        "category": "kitchen",
        "selling_points": ["juice in 30 seconds"],
        "description": "",
        "image_path": "/data/img.png",
    }
    assert pr.script == ["No time for breakfast?"] and pr.language == "zh"
    assert (pr.max_duration_s, pr.n_variants, pr.seed, pr.exclude_audio_ids) == (30.0, 2, 7, [4])
    assert (pr.output.aspect, pr.output.width, pr.output.height, pr.output.transition) == ("1:1", 720, 720, "fade")
    assert (pr.voice.engine, pr.voice.name, pr.voice.language) == ("espeak", "cmn", "zh")
    assert pr.allow_outside_pool is False


def test_ingest_and_rebuild_specs():
    stored = {"clip_id": "clp_" + "0" * 24, "path": "/data/u.mp4", "sha256": "f" * 64, "filename": "u.mp4"}
    assert _json(IngestJobSpec.model_validate(stored).model_dump(mode="json")) == _json(stored)
    spec = RebuildJobSpec.from_request(RebuildRequest(kinds=["bgm", "frames", "bgm"]))
    assert spec.model_dump(mode="json") == {"kinds": ["bgm", "frames"]}
    assert RebuildJobSpec.from_request(RebuildRequest()).kinds == ["frames", "clips", "bgm"]


def test_a_malformed_spec_is_refused():
    with pytest.raises(ValueError):
        EditJobSpec.model_validate({**STORED_EDIT, "pool": [{"kind": "elsewhere", "text": ""}]})


def test_job_states_are_their_names():
    assert [s.value for s in JobState] == ["queued", "running", "done", "failed", "cancelled"]
    assert json.dumps({"state": JobState.DONE}) == '{"state": "done"}' and f"{JobState.DONE}" == "done"
    assert JobState("running") in ACTIVE_STATES and "failed" in TERMINAL_STATES
    assert set(JobState) == ACTIVE_STATES | TERMINAL_STATES and not ACTIVE_STATES & TERMINAL_STATES


def test_minted_ids_match_their_patterns():
    assert re.fullmatch(JOB_ID_PATTERN, new_id("job"))
    for prefix in ("job", "bat", "clp", "img"):
        assert re.fullmatch(id_pattern(prefix), new_id(prefix))
    assert re.fullmatch(r"key_[0-9a-f]{16}", new_id("key", nbytes=8))
    assert new_id("job") != new_id("job")
