"""Data sources, validation and preprocessing into versioned artifacts."""
