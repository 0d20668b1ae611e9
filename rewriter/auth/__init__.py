"""Who may do what: staff accounts, API keys, roles and scopes, signed tokens, the audit log."""
