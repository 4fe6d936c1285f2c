"""Pure: topology and scenario files as frozen dataclasses, with defaults and validation."""
