"""Request-time decisions: rewrite, reference scorer, which rules apply, facts for segments, pins,
explain. Pure.
"""
