"""The affinity math, the profile document and its codec, the request-time view, the writer and
the store.
"""
