"""Files uploaded in the chat's sidebar: validated, saved under safe names, then ingested.

    outcome = ingest_uploads(settings, "papers", [("report.pdf", data)])
    outcome.report.summary(), outcome.rejected

Uploads are kept in `<index_dir>/.uploads/<collection>/`: beside the collections, never inside a
collection's own folder, and out of `list_collections`' sight (a collection name cannot start
with a dot). The ingest job records each document by that path, so the files must stay there;
`rag collections delete` removes them with the collection (so the folder is defined in rag/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.pipeline import IngestJob, IngestReport
from ingest.uploads import MAX_UPLOAD_BYTES as MAX_UPLOAD_BYTES
from ingest.uploads import MAX_UPLOAD_MB as MAX_UPLOAD_MB
from ingest.uploads import check_upload as check_upload
from ingest.uploads import safe_name as safe_name
from ingest.uploads import save_upload as save_upload
from rag.collection import UPLOADS_FOLDER as UPLOADS_FOLDER  # still importable from here
from rag.collection import uploads_dir
from rag.settings import Settings


@dataclass
class UploadOutcome:
    """What an upload did: files saved, files refused (name, reason), and the ingest report."""

    collection: str
    saved: list[Path] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    report: IngestReport | None = None


def ingest_uploads(
    settings: Settings,
    collection: str,
    files: Sequence[tuple[str, bytes]],
    progress: Callable[[int, int], None] | None = None,
    ingesting: Callable[[int, int], None] | None = None,
) -> UploadOutcome:
    """Check and save `files` (name, content) for `collection`, then ingest the saved ones with
    the same job as `rag ingest`; `progress(done, total)` is called as each file is saved and
    `ingesting(done, total)` as each file is ingested."""
    folder = uploads_dir(settings.index_dir, collection)
    outcome = UploadOutcome(collection)
    for done, (name, data) in enumerate(files, start=1):
        reason = check_upload(name, len(data))
        if reason is None:
            outcome.saved.append(save_upload(folder, safe_name(name), data))
        else:
            outcome.rejected.append((name, reason))
        if progress is not None:
            progress(done, len(files))
    if outcome.saved:
        quiet = settings.model_copy(update={"progress": False})  # no tqdm bar on the server log
        outcome.report = IngestJob(quiet).run_files(collection, outcome.saved, progress=ingesting)
    return outcome
