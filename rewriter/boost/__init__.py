"""What a boost profile says: model, rules, segments, the query-DSL subset, YAML parsing, load,
reload, check. Pure except reload and checker's engine side.
"""
