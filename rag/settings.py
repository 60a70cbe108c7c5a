"""One typed settings object: defaults < rag.toml < RAG_* environment < overrides (flags)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from rag.errors import ConfigError

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"
DEFAULT_CONFIG_FILE = Path("rag.toml")

SearchMode = Literal["dense", "bm25", "hybrid"]
# How hybrid search joins the dense and BM25 rankings: by their scores, each min-max normalised
# over its own candidates, or by reciprocal rank (rank only). docs/documents.md, "Fusing scores".
HybridFusion = Literal["scores", "rrf"]
IndexType = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
Device = Literal["auto", "cpu", "cuda"]
# rag.embedding.EMBED_BACKENDS describes each; on a CUDA GPU all of them embed with torch.
EmbedBackend = Literal["torch", "onnx", "int8"]
LLMBackendName = Literal["embedded", "openai", "transformers"]
# Where ingest and batch jobs run: this process, or a Ray cluster (rag.distributed).
Engine = Literal["local", "ray"]
# PDF pages read by Tesseract: those without usable text (auto), every page (force), or none.
OcrMode = Literal["auto", "off", "force"]
# What reads a PDF's text layer: PDFium (fast; pypdf for any page it cannot read), or pypdf alone.
PdfText = Literal["pdfium", "pypdf"]
# Who answers: the small span reader when it is sure and the LLM otherwise (auto), the reader
# only (extractive: no LLM call ever), or the LLM only (llm: the reader does not run).
AnswerMode = Literal["auto", "extractive", "llm"]

# The names each setting allows, for the CLI's and the chat's choices.
INDEX_TYPES: tuple[str, ...] = get_args(IndexType)
DEVICES: tuple[str, ...] = get_args(Device)
LLM_BACKEND_NAMES: tuple[str, ...] = get_args(LLMBackendName)
ENGINES: tuple[str, ...] = get_args(Engine)
OCR_MODES: tuple[str, ...] = get_args(OcrMode)
PDF_TEXT_READERS: tuple[str, ...] = get_args(PdfText)
ANSWER_MODES: tuple[str, ...] = get_args(AnswerMode)


class Settings(BaseSettings):
    """Everything a run can be configured with. Build it with `Settings.load(...)`."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    # Where collections live: one folder each.
    index_dir: Path = Path("indexes")

    # Models. `embedding_model=None` means: the collection's own (or the default for a new one).
    embedding_model: str | None = None
    reranker: str = DEFAULT_RERANKER
    device: Device = "auto"
    embed_batch_size: int = Field(64, ge=1, le=4096)
    # How the bi-encoder runs on the CPU: int8 ONNX Runtime is about 1.5x faster than torch with
    # the same retrieval quality (docs/ingest-throughput.md).
    embed_backend: EmbedBackend = "int8"

    # Chunking, in the embedder's tokens.
    chunk_tokens: int = Field(240, ge=16, le=8192)
    chunk_overlap: int = Field(32, ge=0)
    # Index each chunk with its document's name and the heading above it (docs/documents.md).
    # Fixed per collection when it is created, like the chunk size.
    chunk_context: bool = True
    # Search only these documents and pages (`--where`, rag/filters.py): "document=3M_*.pdf",
    # "page=40-60", or a metadata key=value attached at ingest with `--meta`.
    where: tuple[str, ...] = ()
    # At most this many chunks of one page among a search's results (0: no limit): the best
    # chunk of a page stands for it, and the other places go to other pages.
    chunks_per_page: int = Field(1, ge=0)

    # Index: exact below the threshold, approximate above it (when index_type is "auto").
    index_type: IndexType = "auto"
    approx_threshold: int = Field(200_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(80, ge=8)
    # Search knobs left unset are tuned when the index is built, to reach target_recall
    # (recall@10 against exact search, on the collection's own vectors).
    hnsw_ef_search: int | None = Field(None, ge=8)
    ivf_nlist: int | None = Field(None, ge=1)  # unset: about 4 sqrt(chunks)
    ivf_nprobe: int | None = Field(None, ge=1)
    pq_bytes: int | None = Field(None, ge=1)  # ivfpq code size; unset: dimension / 8
    target_recall: float = Field(0.95, gt=0.0, le=1.0)
    gpu_index: bool = True

    # Search.
    search_mode: SearchMode = "hybrid"
    top_k: int = Field(5, ge=1, le=10_000)
    candidates: int = Field(100, ge=1, le=100_000)
    hybrid_fusion: HybridFusion = "scores"
    # The dense ranking's share of a hybrid score (BM25 has the rest), in either fusion.
    dense_weight: float = Field(0.5, ge=0.0, le=1.0)
    rrf_k: int = Field(60, ge=1)
    # A hybrid hit's score moves towards the best hybrid score of its document among the
    # candidates, (score + document_prior * best) / (1 + document_prior) (0: not at all): the
    # pages of the document that best matches a question rank ahead of a slightly better-scored
    # page of one that matches less well. docs/documents.md, "The document's score".
    document_prior: float = Field(0.5, ge=0.0, le=10.0)
    # Glossaries whose terms add words to a question before the first stage (rag/glossary.py):
    # built-in names (rag/glossaries: "finance") or TOML files; empty: the question as asked.
    query_glossaries: tuple[str, ...] = ("finance",)
    rerank: bool = True
    rerank_depth: int = Field(20, ge=1, le=1000)
    # Tokens the reranker reads: of a question and a passage together (cross-encoder), of each
    # one (MaxSim).
    rerank_max_length: int = Field(256, ge=16, le=4096)
    # A MaxSim reranker encodes each passage once and keeps its token embeddings in the collection
    # (cache/reranker-tokens.sqlite, about 0.15 MB a chunk) up to this size; 0 keeps none.
    rerank_cache_mb: float = Field(2048.0, ge=0.0)

    # Answers. "embedded" is the packaged SmolLM2-135M (offline default, weak); "openai" is any
    # OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server, OpenAI); "transformers" is a
    # causal LM folder on disk.
    llm_backend: LLMBackendName = "embedded"
    llm_model: str | None = None
    llm_base_url: str | None = None
    # Secrets come only from the environment (RAG_LLM_API_KEY or OPENAI_API_KEY), never a file.
    llm_api_key: SecretStr | None = Field(None, exclude=True)
    llm_timeout: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_max_tokens: int = Field(384, ge=1, le=32_768)
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0)
    # Local models only (embedded, transformers; rag.decoding.Decoding): divide the odds of words
    # the answer already used (1: off), forbid saying any run of n tokens twice (0: off), and end
    # the answer after this many sentences (0: no limit; the answer prompt asks for at most 4).
    llm_repetition_penalty: float = Field(1.1, ge=1.0, le=3.0)
    llm_no_repeat_ngram: int = Field(4, ge=0, le=64)
    llm_max_sentences: int = Field(4, ge=0, le=1000)
    llm_concurrency: int = Field(4, ge=1, le=256)
    context_chunks: int = Field(5, ge=1, le=50)
    # The LLM's context window in tokens: the prompt's sources are cut to fit it, with room left
    # for the answer (llm_max_tokens). SmolLM2 and most served models have at least 8,192.
    llm_context_tokens: int = Field(8192, ge=512, le=10_000_000)
    # Refusals. Where the span reader runs (answer_mode auto or extractive) with the packaged
    # bi-encoder and reader, one probability that the documents answer the question decides, from
    # the search's evidence and the reader's confidence together (rag/answerability.py): under
    # min_answerable the question is refused before any LLM call (0.5: more likely not answered
    # than answered). Otherwise (answer_mode llm, another embedder or reader, or
    # min_answerable = 0) two gates decide: the evidence (best question-chunk cosine) under
    # min_evidence, calibrated on SQuAD dev by benchmarks/calibrate_thresholds.py, and the
    # reader's confidence under reader_refuse (docs/answers.md).
    min_answerable: float = Field(0.5, ge=0.0, le=1.0)
    min_evidence: float = Field(0.40, ge=-1.0, le=1.0)
    min_support: float = Field(0.46, ge=0.0, le=1.0)
    answer_mode: AnswerMode = "auto"
    # The reader's confidence is a calibrated probability that its answer holds a correct answer
    # (rag/reader). At or above reader_accept its answer stands with no LLM call (more likely
    # right than wrong); below reader_refuse the passages most likely do not hold an answer, and
    # the question is refused before any LLM call, where min_answerable does not decide (above).
    # In between the LLM answers, with the reader's span as a hint.
    reader_accept: float = Field(0.5, ge=0.0, le=1.0)
    reader_refuse: float = Field(0.1, ge=0.0, le=1.0)
    # The verifier also flags a sentence with two or more words in a row that neither its cited
    # sources nor the question use (docs/answers.md: it catches swapped phrases, and flags more
    # paraphrases); numbers, dates and names are always checked.
    verify_wording: bool = True

    # Threads torch may use for the local models (embedder, reranker, embedded LLM) in this
    # process; None leaves torch's default (one per core). On a shared or busy machine 1 is often
    # fastest: OpenMP threads that wait for a busy core stall every step (docs/answers.md).
    torch_threads: int | None = Field(None, ge=1, le=1024)

    # Jobs on a Ray cluster (`--engine ray`): the cluster's address (None: RAY_ADDRESS, else a
    # Ray instance started on this machine for the job), and how many workers embed (ingest) or
    # answer (batch); None picks from the cluster's CPUs and GPUs.
    engine: Engine = "local"
    ray_address: str | None = None
    ray_workers: int | None = Field(None, ge=1, le=10_000)

    # Input bounds: past these a file or a question gets one clear line instead of hours of work.
    # A file over max_file_mb is reported and skipped (a 200 MB text file would take about two
    # hours to embed on 2 cores); a question over max_question_chars is refused before any model
    # sees it (a 100 KB question ran 14 minutes and took 3.9 GB).
    max_file_mb: float = Field(100.0, gt=0)
    max_question_chars: int = Field(4000, ge=16, le=1_000_000)
    # Links inside an ingested folder that point outside it are skipped unless this is on.
    follow_links: bool = False
    # PDF pages with no text layer or garbled text get their text from Tesseract OCR when it is
    # installed (`apt-get install tesseract-ocr`); "force" OCRs every page, "off" none.
    ocr: OcrMode = "auto"
    # What reads a PDF's text layer: PDFium (loading takes a tenth of pypdf's CPU time on SEC
    # filings, and keeps words apart where pypdf glues them), or pypdf alone. pypdf always opens
    # the file (encryption, repair) and reads any page PDFium cannot. Applies to files ingested
    # from now on.
    pdf_text: PdfText = "pdfium"
    # Ingest reads PDFs in a child process, so that a parser crashing or hanging on a file fails
    # that file only; a PDF that goes this many seconds without a page read is skipped.
    # 0 reads PDFs in the job's own process, with no such protection.
    pdf_stall_s: float = Field(300.0, ge=0.0)

    # `rag serve`: with accounts on, every request carries an API key (`rag users add`) and sees
    # only the collections its user owns or was given; off (the default, for local use), the
    # service is open to anyone who can reach its port, as the CLI and the chat are.
    accounts: bool = False
    # `rag serve`: a server renews its lease on its jobs every quarter of this; a job whose
    # server on another machine has not renewed it for this long is taken over by a replica.
    job_lease_s: float = Field(60.0, ge=1.0, le=86_400.0)

    progress: bool = True

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_tokens ({self.chunk_tokens})"
            )
        if self.llm_max_tokens > self.llm_context_tokens // 2:
            raise ValueError(
                f"llm_max_tokens ({self.llm_max_tokens}) must be at most half of "
                f"llm_context_tokens ({self.llm_context_tokens}), to leave room for the sources"
            )
        return self

    @model_validator(mode="after")
    def _refuse_below_accept(self) -> Settings:
        if self.reader_refuse > self.reader_accept:
            raise ValueError(
                f"reader_refuse ({self.reader_refuse}) must not exceed "
                f"reader_accept ({self.reader_accept})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: explicit overrides, then the environment, then the TOML file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Read settings once: `config_file` (or ./rag.toml when present), env, then overrides."""
        if config_file is not None and not config_file.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        toml_file = config_file or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
        given = {key: value for key, value in overrides.items() if value is not None}
        # A throwaway subclass carries the file path, so no class-level state leaks between loads.
        config = SettingsConfigDict(**{**cls.model_config, "toml_file": toml_file})
        bound = type(cls.__name__, (cls,), {"model_config": config})
        try:
            return bound(**given)
        except ValidationError as e:
            raise ConfigError(_describe(e)) from e
        except SettingsError as e:  # a list setting from the environment that is not JSON
            reason = str(e).splitlines()[0]
            raise ConfigError(
                f"{reason}: a list setting takes JSON from the environment, "
                "e.g. RAG_WHERE='[\"company=3M\"]'"
            ) from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"config file {toml_file} is not valid TOML: {reason}") from e


def _describe(error: ValidationError) -> str:
    """Pydantic's multi-line report as one line: the setting, the bad value, what is allowed."""
    parts = []
    for item in error.errors():
        where = ".".join(str(loc) for loc in item["loc"]) or "settings"
        value = item.get("input")
        shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
        parts.append(f"{where}: {item['msg']}{shown}")
    return "invalid settings: " + "; ".join(parts)
