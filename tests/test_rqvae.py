"""rqvae package: presets, training, the inference API, fast path vs library path, checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rqvae import (
    ModelConfig,
    RQVAECheckpointError,
    RQVAEConfig,
    RQVAEConfigError,
    RQVAEInputError,
    RQVAEMismatchError,
    Tokenizer,
    TrainConfig,
    audio_config,
    code_stats,
    cosine_rows,
    evaluate,
    load_checkpoint,
    preset,
    read_checkpoint_info,
    split_by_group,
    train,
    video_config,
)
from rqvae.train import cosine_lr

D = 16  # toy embedding width


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_config(epochs: int = 10, seed: int = 0, **train_kw) -> RQVAEConfig:
    model = ModelConfig(
        modality="video",
        input_dim=D,
        encoder_hidden=(64,),
        decoder_hidden=(64,),
        codebook_dim=16,
        num_quantizers=4,
        codebook_size=32,
    )
    return RQVAEConfig(
        model=model, train=TrainConfig(epochs=epochs, batch_size=500, val_fraction=0.2, seed=seed, **train_kw)
    )


def clustered(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 12 directions (scenes), 40 rows per group (source video)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, D))
    x = centres[rng.integers(0, 12, n)] + 0.05 * rng.standard_normal((n, D))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, np.arange(n, dtype=np.int64) // 40


@pytest.fixture(scope="module")
def trained():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    x, groups = clustered()
    try:
        result = train(x, groups, tiny_config())
    finally:
        torch.set_num_threads(before)
    held = np.isin(groups, np.asarray(result.val_groups))
    return result, x, groups, held


# -- config --------------------------------------------------------------------------------------


def test_presets_match_paper_table_3():
    v = video_config()
    assert (v.model.input_dim, v.model.encoder_hidden, v.model.decoder_hidden, v.model.codebook_dim) == (
        128,
        (512, 512),
        (512, 512),
        128,
    )
    assert (v.model.num_quantizers, v.model.codebook_size, v.train.epochs) == (8, 256, 20)
    t = v.train
    assert (t.batch_size, t.learning_rate, t.min_learning_rate, t.weight_decay, t.commitment_weight) == (
        8192,
        1e-3,
        2e-5,
        1e-4,
        0.0,
    )
    panns = audio_config(2048)
    assert (panns.model.encoder_hidden, panns.model.decoder_hidden, panns.model.codebook_dim) == (
        (1024, 512),
        (512, 1024),
        256,
    )
    assert (panns.model.num_quantizers, panns.model.codebook_size, panns.train.epochs) == (8, 256, 50)
    # aisfx (512-d): every width scaled by 512 / 2048, quantizer shape unchanged.
    aisfx = preset("audio")
    assert (
        aisfx.model.input_dim,
        aisfx.model.encoder_hidden,
        aisfx.model.decoder_hidden,
        aisfx.model.codebook_dim,
    ) == (512, (256, 128), (128, 256), 64)
    assert (aisfx.model.num_quantizers, aisfx.model.codebook_size) == (8, 256)


def test_config_round_trip_and_validation():
    cfg = audio_config(2048).replace_train(epochs=3, time_budget_s=5.0)
    assert RQVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(RQVAEConfigError, match="modality"):
        ModelConfig(modality="text", input_dim=4, encoder_hidden=(8,), decoder_hidden=(8,), codebook_dim=4)
    with pytest.raises(RQVAEConfigError, match="encoder_hidden"):
        ModelConfig(modality="video", input_dim=4, encoder_hidden=(), decoder_hidden=(8,), codebook_dim=4)
    with pytest.raises(RQVAEConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(RQVAEConfigError, match="min_learning_rate"):
        TrainConfig(epochs=1, learning_rate=1e-3, min_learning_rate=1e-2)
    with pytest.raises(RQVAEConfigError, match="time_budget_s"):
        TrainConfig(epochs=1, time_budget_s=float("nan"))
    with pytest.raises(RQVAEConfigError, match="malformed"):
        RQVAEConfig.from_dict({"model": {"modality": "video"}})


def test_batch_shrinks_only_for_small_training_sets():
    t = video_config().train
    assert t.effective_batch_size(10_000_000) == 8192
    assert t.effective_batch_size(8 * 8192) == 8192
    assert t.effective_batch_size(20_000) == 2500  # 8 steps per epoch
    assert t.effective_batch_size(3_000) == 1024  # floor: k-means init wants rows per code
    assert t.effective_batch_size(300) == 300  # one batch of all rows
    assert TrainConfig(epochs=1, batch_size=500).effective_batch_size(2000) == 500


def test_cosine_schedule_endpoints():
    assert cosine_lr(0, 100, peak=1e-3, floor=2e-5) == pytest.approx(1e-3)
    assert cosine_lr(50, 100, peak=1e-3, floor=2e-5) == pytest.approx((1e-3 + 2e-5) / 2)
    assert cosine_lr(100, 100, peak=1e-3, floor=2e-5) == pytest.approx(2e-5)
    assert cosine_lr(0, 100, peak=1e-3, floor=0, warmup_steps=10) == pytest.approx(1e-4)


# -- split -----------------------------------------------------------------------------------------


def test_split_holds_out_whole_groups():
    groups = np.repeat(np.arange(50), 20)
    tr, va, held = split_by_group(groups, 0.1, seed=3)
    assert set(groups[tr]).isdisjoint(groups[va])
    assert set(groups[va]) == set(held.tolist())
    assert len(tr) + len(va) == len(groups) and len(va) >= 100
    assert np.array_equal(split_by_group(groups, 0.1, seed=3)[1], va)
    assert not np.array_equal(split_by_group(groups, 0.1, seed=4)[1], va)
    assert len(split_by_group(groups, 0.0, seed=3)[1]) == 0
    with pytest.raises(RQVAEInputError, match="one group"):
        split_by_group(np.zeros(10, np.int64), 0.1, seed=0)
    # Never everything: one group always trains.
    tr2, va2, _ = split_by_group(np.repeat([1, 2], 5), 0.99, seed=0)
    assert len(tr2) == 5 and len(va2) == 5


# -- training and quality -------------------------------------------------------------------------


def test_decode_encode_reconstructs_held_out_toy_vectors(trained):
    result, x, _, held = trained
    tok = result.tokenizer
    assert result.stop_reason == "completed" and result.epochs_run == 10
    assert result.val_rows == held.sum() > 0
    recon = tok.decode(tok.encode(x[held]))
    cos = cosine_rows(x[held], recon)
    assert cos.mean() > 0.9, result.final_val.summary()
    assert np.percentile(cos, 5) > 0.75
    # Codes carry the information: another vector's codes reconstruct this one far worse.
    shuffled = tok.decode(np.roll(tok.encode(x[held]), 7, axis=0))
    assert cosine_rows(x[held], shuffled).mean() < cos.mean() - 0.3
    assert result.final_val.mean_cosine == pytest.approx(cos.mean(), abs=1e-6)


def test_training_logs_per_level_usage_and_perplexity(trained):
    result, *_ = trained
    assert len(result.history) == 10
    for h in result.history:
        assert h.val is not None and len(h.val.levels) == 4
    last = result.final_val
    assert all(0 < s.usage <= 1 and 1 <= s.perplexity <= 32 for s in last.levels)
    assert last.levels[0].used_codes >= 8  # 12 clusters: the first level must tell them apart
    # Loss went down.
    assert result.history[-1].train_loss < result.history[0].train_loss
    summary = result.summary()
    assert summary["val_groups"] == list(result.val_groups)
    assert len(summary["final_val"]["perplexity_per_level"]) == 4


def test_codes_in_range_deterministic_and_row_independent(trained):
    result, x, *_ = trained
    tok = result.tokenizer
    codes = tok.encode(x)
    assert codes.shape == (len(x), 4) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 32
    assert np.array_equal(tok.encode(x), codes)
    assert np.array_equal(tok.encode(x[100:137]), codes[100:137])
    assert np.array_equal(tok.encode(x, batch_size=333), codes)
    assert np.array_equal(tok.encode(x.astype(np.float64)), codes)
    # Inputs are L2-normalised first (ModelConfig.normalize_input): scale does not change the codes
    # (beyond float rounding at exact near-ties, which these clustered vectors do not have).
    assert (tok.encode(x * 3.5) == codes).all(axis=1).mean() >= 0.999
    dec = tok.decode(codes)
    assert dec.shape == (len(x), D) and dec.dtype == np.float32
    assert np.array_equal(tok.decode(codes), dec)
    assert tok.encode(np.zeros((0, D), np.float32)).shape == (0, 4)
    assert tok.decode(np.zeros((0, 4), np.int64)).shape == (0, D)


def test_quantized_output_equals_output_rebuilt_from_indices(trained, tmp_path):
    result, x, *_ = trained
    path = result.tokenizer.save(tmp_path / "ck", pca_version="p1")
    model, _ = load_checkpoint(path)
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    rebuilt = model.quantized_from_codes(out.codes)
    torch.testing.assert_close(rebuilt, out.quantized, rtol=0, atol=1e-6)
    plain = result.tokenizer.quantized_latent(out.codes.numpy())
    np.testing.assert_allclose(plain, out.quantized.numpy(), rtol=0, atol=1e-5)
    # Each level adds one unit-norm codebook vector (cosine codebooks).
    books = result.tokenizer.codebooks()
    np.testing.assert_allclose(np.linalg.norm(books, axis=-1), 1.0, atol=1e-5)


def test_fast_path_matches_library_forward(trained):
    result, x, *_ = trained
    tok = result.tokenizer
    agree = tok.compare_paths(x)
    assert agree.rows == len(x)
    assert agree.unexplained_rows == 0, agree
    assert agree.mismatch_rate <= 0.01, agree
    assert agree.max_abs_decode_diff < 1e-4
    codes = tok.encode(x, method="library")
    np.testing.assert_allclose(tok.decode(codes, method="library"), tok.decode(codes), atol=1e-4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((3, D), np.nan, np.float32), "NaN or inf in 3 row"),
        (np.vstack([np.zeros((2, D)), np.full((1, D), np.inf)]), "first at row 2"),
        (np.zeros((4, D + 1), np.float32), "takes 16-d embeddings, got 17-d"),
        (np.zeros(D, np.float32), "single vector"),
        (np.zeros((2, 2, D), np.float32), "2-D"),
        (np.array([["a"] * D]), "real numeric"),
        (np.zeros((2, D), np.complex64), "real numeric"),
    ],
)
def test_encode_rejects_bad_inputs(trained, bad, match):
    with pytest.raises(RQVAEInputError, match=match):
        trained[0].tokenizer.encode(bad)


@pytest.mark.parametrize(
    "codes, match",
    [
        (np.array([[0, 1, 2, 32]]), "code 32 at row 0, level 3 is outside"),
        (np.array([[0, 0, 0, 0], [0, -1, 0, 0]]), "code -1 at row 1, level 1"),
        (np.zeros((2, 3), np.int64), r"shape \(N, 4\)"),
        (np.zeros((2, 4), np.float32), "integer"),
    ],
)
def test_decode_rejects_bad_codes(trained, codes, match):
    with pytest.raises(RQVAEInputError, match=match):
        trained[0].tokenizer.decode(codes)


def test_training_is_seeded_reproducible_and_leaves_global_rng_alone():
    x, groups = clustered(600, seed=1)
    state = torch.random.get_rng_state()
    a = train(x, groups, tiny_config(epochs=2, seed=5))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train(x, groups, tiny_config(epochs=2, seed=5))
    c = train(x, groups, tiny_config(epochs=2, seed=6))
    assert a.val_groups == b.val_groups
    np.testing.assert_array_equal(a.tokenizer.codebooks(), b.tokenizer.codebooks())
    np.testing.assert_array_equal(a.tokenizer.encode(x), b.tokenizer.encode(x))
    assert not np.array_equal(a.tokenizer.codebooks(), c.tokenizer.codebooks())


def test_time_budget_stops_early_with_a_usable_tokenizer():
    x, groups = clustered(600, seed=2)
    result = train(x, groups, tiny_config(epochs=50, time_budget_s=0.01))
    assert result.stop_reason == "time_budget"
    assert result.epochs_run < 50 and result.steps >= 1
    assert result.tokenizer.encode(x).shape == (600, 4)


def test_decoder_starts_at_the_mean_and_batchnorm_recalibration_matches_batch_statistics():
    from rqvae import RQVAE
    from rqvae.train import recalibrate_batchnorm

    x, _ = clustered(2000)
    xt = torch.from_numpy(x)
    torch.manual_seed(0)
    model = RQVAE(tiny_config().model)
    model.train()
    model(xt)  # k-means init of the codebooks
    mean = xt.mean(dim=0)
    model.init_output_at(mean)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(xt[:5]).recon, mean.expand(5, -1))
    # After recalibration, eval-mode BatchNorm uses exactly this data's statistics.
    recalibrate_batchnorm(model, xt, batch_size=len(xt))
    with torch.no_grad():
        eval_z = model.encoder(xt)
        model.encoder.train()
        batch_z = model.encoder(xt)
    torch.testing.assert_close(eval_z, batch_z, rtol=2e-3, atol=2e-3)


def test_train_rejects_bad_inputs():
    x, groups = clustered(200)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(RQVAEInputError, match="first at row 7"):
        train(bad, groups, tiny_config(epochs=1))
    with pytest.raises(RQVAEInputError, match="groups"):
        train(x, groups[:-1], tiny_config(epochs=1))
    with pytest.raises(RQVAEInputError, match="17-d"):
        train(np.zeros((10, D + 1), np.float32), np.arange(10), tiny_config(epochs=1))


def test_code_stats_and_evaluate():
    codes = np.array([[0, 1], [0, 2], [0, 3], [0, 0]])
    s = code_stats(codes, 4)
    assert (s[0].used_codes, s[0].perplexity) == (1, pytest.approx(1.0))
    assert (s[1].used_codes, s[1].usage, s[1].perplexity) == (4, 1.0, pytest.approx(4.0))
    with pytest.raises(RQVAEInputError, match="non-empty"):
        evaluate(None, np.zeros((0, 3)))  # type: ignore[arg-type]


# -- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_round_trip(trained, tmp_path):
    result, x, *_ = trained
    tok = result.tokenizer
    path = tok.save(
        tmp_path / "models" / "rqvae_video",
        pca_version="pca-7",
        encoder="enc-a",
        train_config=tiny_config(),
        extra={"note": "t"},
    )
    assert path.name == "rqvae.safetensors"
    assert sorted(p.name for p in path.parent.iterdir()) == ["rqvae.safetensors"]  # no tmp left behind
    loaded = Tokenizer.load(
        path.parent, expect_modality="video", expect_dim=D, expect_pca_version="pca-7", expect_encoder="enc-a"
    )
    assert np.array_equal(loaded.encode(x), tok.encode(x))
    assert np.array_equal(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    assert loaded.pca_version == "pca-7" and loaded.info is not None and loaded.info.extra == {"note": "t"}
    info = read_checkpoint_info(path)
    assert (info.modality, info.input_dim, info.encoder, info.format_version) == ("video", D, "enc-a", 1)
    assert info.config == tiny_config()
    assert "torch" in info.software and "vector_quantize_pytorch" in info.software


@pytest.mark.parametrize(
    "expect, match",
    [
        ({"expect_modality": "audio"}, "video tokenizer, expected audio"),
        ({"expect_dim": 128}, "takes 16-d vectors, expected 128-d"),
        ({"expect_pca_version": "pca-8"}, "PCA version 'pca-7'.*'pca-8'"),
        ({"expect_encoder": "enc-b"}, "enc-a.*enc-b"),
    ],
)
def test_checkpoint_mismatch_refused(trained, tmp_path, expect, match):
    path = trained[0].tokenizer.save(tmp_path / "ck", pca_version="pca-7", encoder="enc-a")
    with pytest.raises(RQVAEMismatchError, match=match):
        Tokenizer.load(path, **expect)


def _rewrite_header(path: Path, **changes: str) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    meta.update(changes)
    save_file(tensors, str(path), metadata=meta)


def test_checkpoint_format_version_refused(trained, tmp_path):
    path = trained[0].tokenizer.save(tmp_path / "ck", pca_version=None)
    _rewrite_header(path, format_version="2")
    with pytest.raises(RQVAEMismatchError, match="format version 2, this code reads version 1"):
        Tokenizer.load(path)


def test_corrupt_and_missing_checkpoints_give_clear_errors(trained, tmp_path):
    path = trained[0].tokenizer.save(tmp_path / "ck", pca_version=None)
    blob = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(blob[: len(blob) - 1000])
    with pytest.raises(RQVAECheckpointError, match="corrupt or truncated"):
        Tokenizer.load(truncated)
    flipped = tmp_path / "flipped.safetensors"
    data = bytearray(blob)
    data[-5] ^= 0xFF  # inside the tensor data: safetensors itself does not notice
    flipped.write_bytes(bytes(data))
    with pytest.raises(RQVAECheckpointError, match="sha256"):
        Tokenizer.load(flipped)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(RQVAECheckpointError, match="corrupt or truncated"):
        Tokenizer.load(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(RQVAECheckpointError, match="not an RQ-VAE checkpoint"):
        Tokenizer.load(other)
    with pytest.raises(RQVAECheckpointError, match="no RQ-VAE checkpoint here"):
        Tokenizer.load(tmp_path / "nowhere")
    bad_shape = tmp_path / "bad_shape.safetensors"
    bad_shape.write_bytes(blob)
    _rewrite_header(
        bad_shape,
        config=json.dumps(tiny_config().replace_train(epochs=1).to_dict()).replace(
            '"codebook_size": 32', '"codebook_size": 64'
        ),
    )
    with pytest.raises(RQVAECheckpointError, match="do not fit the stored config"):
        Tokenizer.load(bad_shape)


def test_interrupted_save_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    result, _x, *_ = trained
    path = result.tokenizer.save(tmp_path / "ck", pca_version="old")

    def fail(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        result.tokenizer.save(tmp_path / "ck", pca_version="new")
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == ["rqvae.safetensors"]
    assert Tokenizer.load(path).pca_version == "old"


def test_untrained_model_is_not_saved_or_wrapped(tmp_path):
    from rqvae import RQVAE, save_checkpoint

    model = RQVAE(tiny_config().model)
    with pytest.raises(RQVAECheckpointError, match="untrained"):
        save_checkpoint(tmp_path / "ck", model, tiny_config(), pca_version=None)
    with pytest.raises(RQVAEInputError, match="untrained"):
        Tokenizer(model)


def test_package_does_not_import_autocut_indexes_or_server():
    # rqvae never imports autocut, indexes or server (docs/method.md, "Architecture and queue delivery";
    # checked on the source, no subprocess: a cold torch import costs ~15 s on the shared test machine).
    import ast

    root = Path(__file__).resolve().parents[1] / "rqvae"
    offenders = []
    for py in root.glob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            offenders += [f"{py.name}: {n}" for n in names if n.split(".")[0] in ("autocut", "indexes", "server")]
    assert offenders == []
