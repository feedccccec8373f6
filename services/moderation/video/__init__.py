"""The video checkpoint: ``python -m services.moderation.video``."""
