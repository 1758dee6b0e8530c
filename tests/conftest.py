"""Fixtures shared by the test modules."""

import sys
from pathlib import Path

import pytest

# Make the generated-media helpers importable as `media_factory` from every test module.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread: on the shared 2-core machine, contending torch threads run
    far slower than one. Modules that train or run torch models use it with
    `pytestmark = pytest.mark.usefixtures("torch_one_thread")`."""
    import torch  # here, so modules without torch do not import it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_source():
    """`catalog_factory.synthetic_source`: catalog sources with synthetic embeddings, no media behind them."""
    from catalog_factory import synthetic_source  # here: it imports torch

    return synthetic_source


@pytest.fixture(scope="session")
def ingest_media():
    """`ingest_media(root, footage, bgm)`: really ingest these files into the library at `root`
    (footage, then BGM tracks, default ingest settings; any failed file fails the test). Returns
    ({file stem: photo_id}, {file stem: audio_id of its track})."""
    from autocut.library.catalog import Catalog
    from autocut.library.ingest import ingest_paths

    def ingest(root: Path, footage: list[Path], bgm: list[Path]) -> tuple[dict[str, int], dict[str, int]]:
        rep = ingest_paths(root, footage, kind="footage")
        assert not rep.failed, rep.summary()
        rep = ingest_paths(root, bgm, kind="bgm")
        assert not rep.failed, rep.summary()
        with Catalog.open(root, create=False) as cat:
            ids = {Path(s.path).stem: s.photo_id for s in cat.sources()}
            tracks = {Path(t.source_path).stem: t.audio_id for t in cat.bgm_tracks()}
        return ids, tracks

    return ingest
