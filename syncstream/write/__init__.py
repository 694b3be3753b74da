"""Phase 1: frames -> ops -> routed writes -> JSON cache files."""
