"""A/B assignment and impressions."""
