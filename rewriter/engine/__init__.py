"""Talking to OpenSearch: the client, the async HTTP pool, bootstrap and the local node."""
