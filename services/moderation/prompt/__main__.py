"""Runs the prompt checkpoint."""

from alive.service import serve
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint

if __name__ == "__main__":
    serve(PromptCheckpoint, PromptCheckpointSettings())
