"""`autocut eval probe` (autocut/evaluation/probe.py): representations at L levels, frame/shot/split
assignment, probes against chance on separable synthetic data, the JSON written, and the CLI's errors.

Everything is built from small arrays; no world is generated and no RQ-VAE is trained (a numpy
residual quantizer stands in for the tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from autocut.cli import build_parser, main
from autocut.cli import eval as cli_eval
from autocut.demo_world.config import WORLD_FORMAT_VERSION
from autocut.demo_world.manifest import MANIFEST_FORMAT
from autocut.errors import ConfigError
from autocut.evaluation import probe
from autocut.library.catalog import Catalog


class FakeTokenizer:
    """Residual quantization against fixed random codebooks (Q levels x K codes x D), decode = sum."""

    def __init__(self, dim: int, levels: int = 8, size: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._books = rng.normal(size=(levels, size, dim)).astype(np.float32) / np.sqrt(dim)
        self.num_quantizers, self.codebook_size = levels, size

    def encode(self, x: np.ndarray) -> np.ndarray:
        res = np.asarray(x, np.float32).copy()
        codes = np.zeros((len(res), self.num_quantizers), np.int64)
        for q in range(self.num_quantizers):
            d = ((res[:, None, :] - self._books[q][None]) ** 2).sum(-1)
            codes[:, q] = d.argmin(1)
            res -= self._books[q][codes[:, q]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return sum(self._books[q][codes[:, q]] for q in range(self.num_quantizers))

    def codebooks(self) -> np.ndarray:
        return self._books.copy()


def _synthetic(n_products: int = 12, seed: int = 0, dim: int = 16) -> probe.ProbeData:
    """Shots whose frames sit around a role centre plus a brand centre (linearly separable), 4 frames each."""
    rng = np.random.default_rng(seed)
    roles, brands, sps = ["hook", "feature", "cta"], ["dots", "rings"], ["fast", "light"]
    centre = {k: rng.normal(size=dim) * 3 for k in roles + brands + sps}
    vecs, owner, ids, split, lab = [], [], [], [], {t: [] for t in probe.TARGETS}
    for p in range(n_products):
        sp_split = "train" if p < n_products * 2 // 3 else "test"
        brand = brands[p % 2]
        for r in roles:
            for kind in ("ad", "distractor"):
                sp = sps[(p + (kind == "ad")) % 2] if r == "feature" else None
                k = len(ids)
                ids.append(f"p{p}-{r}-{kind}")
                split.append(sp_split)
                lab["role"].append(r)
                lab["brand"].append(brand if kind == "ad" else None)
                lab["selling_point"].append(sp)
                c = centre[r] + (centre[brand] if kind == "ad" else 0) + (centre[sp] if sp else 0)
                vecs.append(c + rng.normal(size=(4, dim)) * 0.3)
                owner += [k] * 4
    return probe.ProbeData(
        vectors=np.concatenate(vecs).astype(np.float32),
        frame_shot=np.asarray(owner, np.int64),
        shot_ids=ids,
        shot_split=np.asarray(split),
        labels={t: np.asarray(v, dtype=object) for t, v in lab.items()},
    )


# --------------------------------------------------------------------------- representations
def test_onehot_codes_at_l_levels() -> None:
    codes = np.array([[3, 0, 7, 1], [0, 15, 2, 2]])
    x = probe.code_features(codes, 2, codebook_size=16)
    assert sparse.issparse(x) and x.shape == (2, 32)
    dense = x.toarray()
    assert dense.sum(1).tolist() == [2, 2]  # exactly L ones per frame
    assert np.flatnonzero(dense[0]).tolist() == [3, 16 + 0]  # column = level * K + code
    assert np.flatnonzero(dense[1]).tolist() == [0, 16 + 15]
    assert probe.code_features(codes, 4, codebook_size=16).shape == (2, 64)
    with pytest.raises(ConfigError):
        probe.code_features(codes, 5, codebook_size=16)
    with pytest.raises(ConfigError):
        probe.code_features(codes, 0, codebook_size=16)


def test_partial_reconstruction_sums_the_first_levels() -> None:
    tok = FakeTokenizer(dim=6, levels=4, size=8)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    codes = tok.encode(x)
    books = tok.codebooks()
    p2 = probe.code_features(codes, 2, codebook_size=8, mode="partial", codebooks=books)
    np.testing.assert_allclose(p2, books[0][codes[:, 0]] + books[1][codes[:, 1]], rtol=1e-6)
    p4 = probe.code_features(codes, 4, codebook_size=8, mode="partial", codebooks=books)
    np.testing.assert_allclose(p4, tok.decode(codes), rtol=1e-5, atol=1e-6)  # all levels = the decoder input here
    with pytest.raises(ConfigError):
        probe.code_features(codes, 2, codebook_size=8, mode="partial")
    with pytest.raises(ConfigError):
        probe.code_features(codes, 2, codebook_size=8, mode="bits")


def test_build_representations_names_and_shapes() -> None:
    tok = FakeTokenizer(dim=16, levels=8, size=16)
    x = np.random.default_rng(2).normal(size=(10, 16)).astype(np.float32)
    reps = probe.build_representations(x, tok, levels=(1, 2, 4, 8))
    assert list(reps) == ["pca", "rq-decoded", "codes L=1", "codes L=2", "codes L=4", "codes L=8"]
    assert reps["pca"].shape == reps["rq-decoded"].shape == (10, 16)
    assert [reps[f"codes L={lv}"].shape[1] for lv in (1, 2, 4, 8)] == [16, 32, 64, 128]
    partial = probe.build_representations(x, tok, levels=(2,), mode="partial")
    assert partial["codes L=2"].shape == (10, 16) and not sparse.issparse(partial["codes L=2"])
    with pytest.raises(ConfigError):
        probe.build_representations(x, tok, levels=(9,))


def test_clip_means_dense_and_sparse() -> None:
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    owner = np.array([0, 0, 1, 1, 1])
    np.testing.assert_allclose(probe.clip_means(x, owner, 3), [[1, 2], [6, 7], [0, 0]])
    onehot = probe.code_features(np.array([[1], [2], [1], [1], [0]]), 1, codebook_size=4)
    hist = probe.clip_means(onehot, owner, 2)
    assert sparse.issparse(hist)
    np.testing.assert_allclose(hist.toarray(), [[0, 0.5, 0.5, 0], [1 / 3, 2 / 3, 0, 0]], rtol=1e-6)


# --------------------------------------------------------------------------- frames, labels, splits
def _manifest() -> dict:
    products = [
        {"product_id": "a", "split": "train", "brand_mark": "dots"},
        {"product_id": "b", "split": "test", "brand_mark": "rings"},
        {"product_id": "c", "split": "val", "brand_mark": "stars"},
    ]
    shots = []
    for pid, photo in (("a", 1), ("b", 2), ("c", 3)):
        split = next(p["split"] for p in products if p["product_id"] == pid)
        shots += [
            {"shot_id": f"{pid}-hook", "product_id": pid, "split": split, "role": "hook", "kind": "ad",
             "selling_point": None, "photo_id": photo, "offset_s": 0.0, "duration_s": 3.0},
            {"shot_id": f"{pid}-feature", "product_id": pid, "split": split, "role": "feature", "kind": "ad",
             "selling_point": "fast", "photo_id": photo, "offset_s": 3.0, "duration_s": 2.5},
            {"shot_id": f"{pid}-rival", "product_id": pid, "split": split, "role": "cta", "kind": "distractor",
             "selling_point": None, "photo_id": photo, "offset_s": 5.5, "duration_s": 2.0},
        ]  # fmt: skip
    return {"products": products, "shots": shots}


def test_shot_frames_and_labels_from_a_manifest() -> None:
    man = _manifest()
    fids = np.array([photo * 10**4 + i for photo in (1, 2, 3) for i in range(8)], np.int64)
    rows, owner = probe.shot_frame_rows(fids, man["shots"][:3])
    # hook: frames 0,1,2; feature: 3,4,5 (ceil(3+2.5)=6); rival: ceil(5.5)=6 .. ceil(7.5)=8 -> 6,7
    assert rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 7] and owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    vecs = np.arange(len(fids), dtype=np.float32)[:, None].repeat(2, 1)
    data = probe.probe_data_from_manifest(man, fids, vecs, splits=("train", "test"))
    assert data.shot_ids == ["a-hook", "a-feature", "a-rival", "b-hook", "b-feature", "b-rival"]
    assert data.shot_split.tolist() == ["train"] * 3 + ["test"] * 3  # val product left out
    assert data.n_frames == 16 and data.vectors[8, 0] == 8.0  # b's first frame is row 8 of the catalog
    assert data.labels["role"].tolist() == ["hook", "feature", "cta"] * 2
    assert data.labels["brand"].tolist() == ["dots", "dots", None, "rings", "rings", None]  # ad shots only
    assert data.labels["selling_point"].tolist() == [None, "fast", None] * 2
    assert probe.shot_labels(man["shots"][2], man["products"][0]) == {
        "role": "cta",
        "brand": None,
        "selling_point": None,
    }


def test_missing_frames_drop_the_shot() -> None:
    man = _manifest()
    fids = np.array([1 * 10**4 + i for i in range(3)] + [2 * 10**4 + i for i in range(8)], np.int64)
    data = probe.probe_data_from_manifest(man, fids, np.zeros((len(fids), 2)), splits=("train", "test"))
    assert data.shot_ids == ["a-hook", "b-hook", "b-feature", "b-rival"]


def test_subsample_keeps_whole_shots_of_every_split() -> None:
    split = np.array(["train"] * 30 + ["test"] * 10)
    per = np.full(40, 5)
    keep = probe.subsample_shots(split, per, 50, seed=0)
    assert 40 <= per[keep].sum() <= 60
    assert set(split[keep]) == {"train", "test"}
    assert (split[keep] == "train").sum() > (split[keep] == "test").sum()
    np.testing.assert_array_equal(keep, probe.subsample_shots(split, per, 50, seed=0))  # deterministic
    assert len(probe.subsample_shots(split, per, 10**6)) == 40
    with pytest.raises(ConfigError):
        probe.subsample_shots(split, per, 0)
    data = probe.probe_data_from_manifest(
        _manifest(),
        np.array([p * 10**4 + i for p in (1, 2) for i in range(8)]),
        np.zeros((16, 2)),
        splits=("train", "test"),
        max_frames=6,
    )
    assert set(data.shot_split) == {"train", "test"} and data.n_frames <= 8


# --------------------------------------------------------------------------- probes
def test_chance_and_single_class() -> None:
    assert probe.chance_accuracy(["a", "a", "b", "a"]) == 0.75
    assert probe.chance_accuracy([]) == 0.0
    s = probe.fit_and_score(np.zeros((3, 2)), np.array(["x"] * 3), np.zeros((2, 2)), np.array(["x", "y"]))
    assert s.accuracy == 0.5 and s.n_classes == 1 and s.unseen_test == 1


def test_probe_beats_chance_on_separable_data() -> None:
    data = _synthetic()
    reps = probe.build_representations(data.vectors, FakeTokenizer(dim=16), levels=(1, 8))
    seen = []
    res = probe.run_probe(data, reps, levels=(1, 8), progress=lambda d, t, w: seen.append((d, t)))
    assert seen[-1] == (24, 24)
    assert list(res.scores) == ["pca", "rq-decoded", "codes L=1", "codes L=8"]
    for target in probe.TARGETS:
        for gran in ("frame", "clip"):
            s = res.scores["pca"][target][gran]
            assert s.accuracy >= 0.95, (target, gran, s)
            assert s.chance <= 0.6 and s.accuracy > s.chance + 0.3
    pca_role = res.scores["pca"]["role"]["frame"]
    assert pca_role.n_train == 8 * 6 * 4 and pca_role.n_test == 4 * 6 * 4 and pca_role.n_classes == 3
    assert res.scores["pca"]["brand"]["frame"].n_test == 4 * 3 * 4  # distractor shots carry no brand
    assert res.scores["pca"]["selling_point"]["clip"].n_test == 4 * 2  # feature shots only
    assert res.n_frames == {"train": 192, "test": 96} and res.n_shots == {"train": 48, "test": 24}


def test_probe_at_chance_on_shuffled_labels() -> None:
    data = _synthetic(n_products=18, seed=3)
    rng = np.random.default_rng(0)
    labels = dict(data.labels)
    labels["role"] = rng.permutation(labels["role"])
    noisy = probe.ProbeData(data.vectors, data.frame_shot, data.shot_ids, data.shot_split, labels)
    res = probe.run_probe(noisy, {"pca": noisy.vectors})
    s = res.scores["pca"]["role"]["frame"]
    assert s.accuracy < 0.6  # 3 roles: chance is ~1/3


def test_result_json_and_table(tmp_path: Path) -> None:
    data = _synthetic(n_products=6)
    reps = probe.build_representations(data.vectors, FakeTokenizer(dim=16), levels=(2,))
    res = probe.run_probe(data, reps, levels=(2,))
    paths = probe.write_probe(res, tmp_path / "out")
    assert [p.name for p in paths] == ["probe.json", "probe.md"]
    d = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert d["format"] == "autocut-probe" and d["split"] == "test" and d["levels"] == [2]
    assert set(d["scores"]) == {"pca", "rq-decoded", "codes L=2"}
    assert set(d["scores"]["pca"]["role"]["frame"]) >= {"accuracy", "chance", "n_train", "n_test", "converged"}
    assert d["chance"]["role"]["frame"] == pytest.approx(res.scores["pca"]["role"]["frame"].chance)
    assert not list((tmp_path / "out").glob("*.tmp"))
    text = (tmp_path / "out" / "probe.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| representation"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "representation",
        "role frame",
        "role clip",
        "brand frame",
        "brand clip",
        "selling pt frame",
        "selling pt clip",
    ]
    assert "| chance (majority)" in text and "| codes L=2" in text


# --------------------------------------------------------------------------- CLI
def test_cli_parses_probe_beside_the_planner_eval() -> None:
    p = build_parser()
    a = p.parse_args(["eval", "--planners", "random", "heuristic", "--seeds", "0,1"])
    assert a.func is cli_eval.run and a.planners == ["random", "heuristic"] and a.eval_command is None
    a = p.parse_args(["eval", "probe", "--max-frames", "100", "--levels", "1,8"])
    assert a.func is cli_eval.run_probe and a.max_frames == 100 and a.out is None
    assert ",".join(map(str, probe.LEVELS)) == cli_eval._PROBE_LEVELS
    assert cli_eval._PROBE_CODE_FEATURES == probe.CODE_FEATURES


def test_cli_without_a_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    with Catalog.open(lib, create=True, writable=True):
        pass
    assert main(["--library", str(lib), "eval", "probe"]) == 2
    err = capsys.readouterr().err
    assert "no demo world" in err and "demo-world build" in err


def test_cli_without_a_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    with Catalog.open(lib, create=True, writable=True):
        pass
    (lib / "world").mkdir()
    manifest = {"format": MANIFEST_FORMAT, "version": WORLD_FORMAT_VERSION, "products": [], "shots": []}
    (lib / "world" / "world.json").write_text(json.dumps(manifest))
    assert main(["--library", str(lib), "eval", "probe"]) == 2
    err = capsys.readouterr().err
    assert "rqvae train --modality video" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--levels", "0,2"], "--levels"),
        (["--levels", "x"], "--levels"),
        (["--max-frames", "0"], "--max-frames"),
        (["--max-iter", "0"], "--max-iter"),
    ],
)
def test_cli_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["--library", str(tmp_path / "none"), "eval", "probe", *args]) == 2
    assert message in capsys.readouterr().err
