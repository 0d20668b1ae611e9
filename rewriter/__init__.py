"""affinity: personalized search ranking that runs inside OpenSearch."""

__version__ = "0.1.0"
