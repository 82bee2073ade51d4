"""The two PAFT training branches: L1-sparsified SFT and preference alignment."""
