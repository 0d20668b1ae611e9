"""Item pairs from sessions, scored by significance (pure)."""
