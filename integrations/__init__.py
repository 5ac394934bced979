"""Real servers for kubealias's end-to-end tests (see docs/design.md, "Test environment")."""
