"""Every `affinity` command; the top-level cli.py is the console script's entry."""
