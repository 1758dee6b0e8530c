"""The material library: media probing, ingest, the catalog, ids, shot segmentation, VAD, the
library's PCA, visual tags, RQ-VAE codes and FAISS indexes, and `LibraryLayout`, which owns every
path inside a library directory.

Modules: `layout` (paths), `ids` (photo/frame/clip id arithmetic), `media` (ffprobe/ffmpeg, frame
sampling, content hash, audio decoding), `catalog` (SQLite rows + memory-mapped vectors), `ingest`
(footage and BGM), `ads` (reference edits from finished ads: ASR, sentences, BGM), `segmentation`,
`vad`, `pca`, `tags`, `codes` (the library's RQ-VAE tokenizers), `indexing` (FAISS indexes),
`samples` (packaged sample media)."""

from typing import TYPE_CHECKING

from autocut._lazy import lazy_exports

if TYPE_CHECKING:
    from autocut.library.ads import reference_edit_from_ad
    from autocut.library.catalog import Catalog
    from autocut.library.codes import load_library_tokenizer, train_library_tokenizer
    from autocut.library.ids import clip_id, frame_id, split_clip_id, split_frame_id
    from autocut.library.indexing import index_status, rebuild_indexes
    from autocut.library.ingest import IngestConfig, IngestReport, ingest_paths
    from autocut.library.layout import LibraryLayout
    from autocut.library.media import MediaInfo, content_hash, load_audio_mono, probe, sample_frames
    from autocut.library.pca import current_pca, refit_library_pca

__all__ = [
    "Catalog",
    "IngestConfig",
    "IngestReport",
    "LibraryLayout",
    "MediaInfo",
    "clip_id",
    "content_hash",
    "current_pca",
    "frame_id",
    "index_status",
    "ingest_paths",
    "load_audio_mono",
    "load_library_tokenizer",
    "probe",
    "rebuild_indexes",
    "reference_edit_from_ad",
    "refit_library_pca",
    "sample_frames",
    "split_clip_id",
    "split_frame_id",
    "train_library_tokenizer",
]

_SOURCES = {
    "Catalog": "catalog",
    "IngestConfig": "ingest",
    "IngestReport": "ingest",
    "LibraryLayout": "layout",
    "MediaInfo": "media",
    "clip_id": "ids",
    "content_hash": "media",
    "current_pca": "pca",
    "frame_id": "ids",
    "index_status": "indexing",
    "ingest_paths": "ingest",
    "load_audio_mono": "media",
    "load_library_tokenizer": "codes",
    "probe": "media",
    "rebuild_indexes": "indexing",
    "reference_edit_from_ad": "ads",
    "refit_library_pca": "pca",
    "sample_frames": "media",
    "split_clip_id": "ids",
    "split_frame_id": "ids",
    "train_library_tokenizer": "codes",
}
__getattr__ = lazy_exports(__name__, _SOURCES)
