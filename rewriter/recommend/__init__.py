"""Recommendation carousels: request, model bodies, the pair tables and their build."""
