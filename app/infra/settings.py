"""Settings from environment variables (prefix DIGITS_; the admin token is plain ADMIN_TOKEN).

The only reader of the environment: everything else is given a Settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.images import DEFAULT_MAX_PIXELS
from model.paths import INITIAL_VERSION, MNIST_DIR, WEIGHTS_DIR

SQLITE_FILE = "jobs.sqlite"  # the database in the runtime folder when no DIGITS_DATABASE_URL is set


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGITS_", extra="ignore")

    runtime_dir: Path = Field(Path("var"), description="versioned models, the active pointer, job database")
    weights_dir: Path = Field(WEIGHTS_DIR, description="committed weights that seed the registry")
    initial_version: str = Field(
        INITIAL_VERSION, description="the committed version a fresh install serves (then: the admin's choice)"
    )
    database_url: str | None = Field(
        None, description="postgresql://user:password@host/db to share state between hosts; unset: SQLite"
    )
    training: Literal["auto", "local", "workers"] = Field(
        "auto",
        description="who runs training jobs: 'local' (a process this server starts), 'workers' (`digits worker`"
        " processes; the web server only queues), 'auto' (workers with a database_url, else local)",
    )
    heartbeat_s: float = Field(2.0, gt=0, description="how often a training worker says it is alive")
    cancel_grace_s: float = Field(
        10.0, gt=0, description="a cancelled job still inside one step this long after is ended with its process"
    )
    worker_timeout_s: float = Field(
        20.0, gt=0, description="a running job whose worker has been silent this long is marked failed"
    )
    worker_poll_s: float = Field(1.0, gt=0, description="how often an idle training worker looks for queued jobs")
    data_dir: Path = Field(MNIST_DIR, description="MNIST folder")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1, description="largest request body accepted")
    max_in_flight: int = Field(
        16, ge=1, description="costly requests (/predict, /read, /explain) a worker takes in at once; more get 503"
    )
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest image (width x height) decoded")
    max_request_pixels: int = Field(
        2 * DEFAULT_MAX_PIXELS, ge=1, description="most pixels one request may decode, over all its images"
    )
    decode_threads: int = Field(2, ge=1, le=16, description="image-decoding threads per worker")
    max_batch: int = Field(256, ge=1, le=4096, description="most images in one /predict/batch request")
    uncertain_below: float | None = Field(
        None, ge=0, le=1, description="override: confidence under which answers are 'uncertain' (default: the model's)"
    )
    reload_interval_s: float = Field(0.25, gt=0, description="how often each worker checks the active pointer")
    feedback_rate: str = Field("30/minute", description="corrections one client may send (a `limits` rate)")
    max_feedback_items: int = Field(100_000, ge=1, description="corrections kept at most; past it, 503")
    max_train_memory_bytes: int = Field(
        4 * 1024**3, ge=1, description="a training job's estimated peak memory at most; past it POST /train is 422"
    )
    train_memory_cap_bytes: int | None = Field(
        None,
        ge=64 * 1024**2,
        description="hard limit on each training process's memory (RLIMIT_DATA); past it the job fails 'out of "
        "memory'. Default: max_train_memory_bytes + 2 GiB (what a job holds besides its network: MNIST, the "
        "generated sets, Python; the cnn job peaked at 1.8 GiB against an estimate of 0.44 GiB)",
    )
    feedback_pending_per_client: int = Field(
        500, ge=1, description="corrections one client may have waiting for review; past it, 429"
    )
    max_feedback_bytes: int = Field(2 * 1024**3, ge=1, description="bytes of corrections' images kept at most")
    admin_token: str | None = Field(None, validation_alias="ADMIN_TOKEN")
    log_level: str = "INFO"

    @property
    def train_memory_cap(self) -> int:
        return self.train_memory_cap_bytes or self.max_train_memory_bytes + 2 * 1024**3

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment variables that give them, for a process this one starts."""
        env = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None:
                key = field.validation_alias if isinstance(field.validation_alias, str) else f"DIGITS_{name.upper()}"
                env[key] = str(Path(value).resolve()) if isinstance(value, Path) else str(value)
        return env

    @property
    def uses_workers(self) -> bool:
        return self.training == "workers" or (self.training == "auto" and self.database_url is not None)

    @property
    def database(self) -> str | Path:
        """What app.infra.db.open_db takes: the URL, or the runtime folder's SQLite file."""
        return self.database_url or Path(self.runtime_dir) / SQLITE_FILE
