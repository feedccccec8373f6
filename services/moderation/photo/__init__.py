"""The photo checkpoint: ``python -m services.moderation.photo``."""
