"""The three moderation checkpoints, each a service of its own: photo, prompt, video."""
