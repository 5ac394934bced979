"""Real servers for kubealias's end-to-end tests (see DESIGN.md, "Test environment")."""
