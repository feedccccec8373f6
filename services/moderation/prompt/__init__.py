"""The prompt checkpoint: ``python -m services.moderation.prompt``."""
