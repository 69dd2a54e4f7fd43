"""Settings from environment variables (prefix DIGITS_; the admin token is plain ADMIN_TOKEN)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGITS_", extra="ignore")

    runtime_dir: Path = Field(Path("var"), description="versioned models, the active pointer, job database")
    weights_dir: Path = Field(REPO_ROOT / "weights", description="committed weights that seed the registry")
    data_dir: Path | None = Field(None, description="MNIST folder (default: the repository's data/mnist)")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1, description="largest request body accepted")
    max_image_pixels: int = Field(16_000_000, ge=1, description="largest image (width x height) decoded")
    max_batch: int = Field(256, ge=1, le=4096, description="most images in one /predict/batch request")
    uncertain_below: float = Field(0.7, ge=0, le=1, description="confidence under which answers are 'uncertain'")
    reload_interval_s: float = Field(0.25, gt=0, description="how often each worker checks the active pointer")
    admin_token: str | None = Field(None, validation_alias="ADMIN_TOKEN")
    log_level: str = "INFO"

    @property
    def models_dir(self) -> Path:
        return self.runtime_dir / "models"


@lru_cache
def get_settings() -> Settings:
    return Settings()
