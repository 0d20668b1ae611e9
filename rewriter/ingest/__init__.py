"""The write path: pipeline, group commit, file import, popularity, journal, catalog load,
erasure, user operations, segment priors.
"""
