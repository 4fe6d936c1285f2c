"""Scenario files: step parsing (pure), the runner and its reports (acts)."""
